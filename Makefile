# Two commands do everything on a fresh machine:
#   make demo   light set-up (pydantic + PyYAML, no torch), validate the examples, plan one (seconds)
#   make test   full set-up (CPU torch first, then transformers, peft, ...), lint, the whole suite (CI)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BASE_STAMP := $(VENV)/.installed-base
# CPU torch first: an unpinned torch would pull a multi-GB CUDA build (see DEVELOPERS.md).
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test lint bench-cli
setup: $(STAMP)

# The base install: what `validate` and `plan` on the bundled catalog need (no torch): the two
# `dependencies` of pyproject.toml, pinned by constraints/ci.txt. The demo runs the package from
# this folder (`python -m loraplan`), so no build step; `make test` installs it editable.
BASE_DEPS := pydantic PyYAML
$(BASE_STAMP): pyproject.toml constraints/ci.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(BASE_DEPS) -c constraints/ci.txt
	touch $(BASE_STAMP)

$(STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' -c constraints/ci.txt
	touch $(STAMP)

demo: $(BASE_STAMP)
	$(BIN)/python -m loraplan validate examples/*.yaml
	$(BIN)/python -m loraplan plan examples/llama3-8b-qlora.yaml

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

bench-cli: $(STAMP)
	$(BIN)/python benchmarks/cli_startup.py

# Axolotl goldens (tests/schema/data/axolotl-goldens) from Axolotl's own code, in an isolated venv
# that is never part of loraplan's install or CI (tools/axolotl_oracle/README.md).
AXOLOTL_VENV ?= .venv-axolotl
.PHONY: axolotl-goldens
axolotl-goldens:
	test -x $(AXOLOTL_VENV)/bin/python || $(PYTHON) -m venv $(AXOLOTL_VENV)
	$(AXOLOTL_VENV)/bin/python -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(AXOLOTL_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -r tools/axolotl_oracle/requirements.txt
	PYTHONPATH=$(CURDIR) $(AXOLOTL_VENV)/bin/python -m tools.axolotl_oracle.record

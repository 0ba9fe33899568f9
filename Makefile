# Two commands do everything on a fresh machine:
#   make demo   set up .venv, then plan a bundled example (no GPU, no network)
#   make test   set up .venv, then lint and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU torch first: an unpinned torch would pull a multi-GB CUDA build (see DEVELOPERS.md).
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test lint bench-cli
setup: $(STAMP)

$(STAMP): pyproject.toml constraints/ci.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' -c constraints/ci.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/loraplan validate examples/*.yaml
	$(BIN)/loraplan plan examples/llama3-8b-qlora.yaml

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

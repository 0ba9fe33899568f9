"""The set-up the README's two commands run: `make demo` is light (no torch), pins are complete."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()


def _rule(target: str) -> tuple[str, str]:
    """(prerequisites, recipe) of a Makefile rule."""
    match = re.search(rf"^{re.escape(target)}:([^\n]*)\n((?:\t[^\n]*\n)*)", MAKEFILE, re.M)
    assert match, target
    return match.group(1), match.group(2)


def test_demo_needs_only_the_base_install():
    prereqs, recipe = _rule("demo")
    assert prereqs.split() == ["$(BASE_STAMP)"]
    _, base = _rule("$(BASE_STAMP)")
    assert "torch" not in base.lower() and "[dev]" not in base and "TORCH_SPEC" not in base
    assert "validate examples/*.yaml" in recipe and "plan examples/" in recipe


def test_base_deps_are_pyprojects_dependencies():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!;\[ ]", d, maxsplit=1)[0] for d in deps}
    base = re.search(r"^BASE_DEPS := (.*)$", MAKEFILE, re.M)
    assert base and set(base.group(1).split()) == names


def test_full_setup_still_installs_torch_first():
    prereqs, recipe = _rule("$(STAMP)")
    assert "$(BASE_STAMP)" in prereqs
    lines = [line for line in recipe.splitlines() if "pip install" in line]
    assert "TORCH_SPEC" in lines[0] and "[dev]" in lines[1]


def test_bitsandbytes_is_pinned_to_what_is_installed():
    pins = dict(
        line.split("==", 1) for line in (ROOT / "constraints" / "ci.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert "bitsandbytes" in pins
    try:
        installed = metadata.version("bitsandbytes")
    except metadata.PackageNotFoundError:
        pytest.skip("bitsandbytes is not installed here")
    assert pins["bitsandbytes"].strip() == installed

"""Shared fixtures. Keep this file additive: several test packages use it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test reaches a real hub: `plan` goes online unless HF_HUB_OFFLINE is set. Hub tests unset it
# and point HF_ENDPOINT at a local stand-in (tests/hub_standin.py).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "examples"


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def examples_dir() -> Path:
    return EXAMPLES_DIR


@pytest.fixture
def plain_env(monkeypatch):
    """CLI output as a pipe sees it: no colour, no GitHub annotations."""
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> path of a new UTF-8 file under tmp_path."""

    def _write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return _write


@pytest.fixture
def run(capsys):
    """run(*argv) -> (exit code, stdout, stderr) of the loraplan CLI, in process."""
    from loraplan import cli

    def _run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return _run

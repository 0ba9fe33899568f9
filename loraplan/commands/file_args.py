"""The FILE arguments of `validate`: folders walked for YAML (as ruff walks for Python), missing
paths told apart from findings.

A folder stands for every `*.yaml` / `*.yml` file under it, in sorted order, skipping hidden
folders (`.git`, `.github`, `.venv`) and `node_modules` / `__pycache__`; symlinked folders are not
followed (no cycles). A path that does not exist is a usage error (exit 2, like a mistyped
flag); a file that exists but cannot be read as a config is a finding (exit 1).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

YAML_SUFFIXES = (".yaml", ".yml")
SKIPPED_FOLDERS = frozenset({"node_modules", "__pycache__"})


@dataclass
class FileArgs:
    files: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # named on the command line, absent
    empty_folders: list[str] = field(default_factory=list)  # folders with no YAML file


def _walk(folder: str) -> list[str]:
    found = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_FOLDERS)
        found += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(YAML_SUFFIXES)]
    return found


def expand(paths: Iterable[str]) -> FileArgs:
    out = FileArgs()
    for path in paths:
        try:
            is_dir = os.path.isdir(path)
            exists = is_dir or os.path.lexists(path)
        except (OSError, ValueError):
            is_dir, exists = False, True  # let the reader report it, located
        if is_dir:
            walked = _walk(path)
            out.files += walked
            if not walked:
                out.empty_folders.append(path)
            continue
        if not exists:
            out.missing.append(path)
        out.files.append(path)
    out.files = list(dict.fromkeys(out.files))
    return out

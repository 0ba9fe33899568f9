"""Write what a command was asked to write, and nothing else: no overwrite, no symlink, no input.

`plan -o FILE` and `export-peft -o DIR` run in scripts and CI, where a typo in -o must not
destroy the config just read, a file a symlink points at, or an adapter_config.json that belongs
to trained weights. So an existing file or a symlink is replaced only with --force (atomically,
replacing the link itself rather than its target), and an input of the command never is.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


class Refused(Exception):
    """The write was refused; the message says why and what to do."""


def _same_file(a: Path, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_target(path: Path, *, force: bool, inputs: Iterable[str] = ()) -> None:
    """Refused when writing `path` would replace an input, or (without force) a file or symlink."""
    for source in inputs:
        if _same_file(path, source):
            raise Refused(f"{path} is the input {source}; write the output elsewhere")
    try:
        is_link = path.is_symlink()
        exists = is_link or path.exists()
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot write {path}: {exc}") from None
    if exists and path.is_dir() and not is_link:
        raise Refused(f"{path} is a directory")
    if is_link and not force:
        raise Refused(f"{path} is a symbolic link; pass --force to replace the link (its target stays untouched)")
    if exists and not force:
        raise Refused(f"{path} exists; pass --force to replace it")


def write_text(path: str | Path, text: str, *, force: bool, inputs: Iterable[str] = ()) -> Path:
    """Write `text` to `path` as check_target allows: a new file, or an atomic replacement with force."""
    target = Path(path)
    check_target(target, force=force, inputs=inputs)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
    except OSError as exc:
        raise Refused(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        if force:
            os.replace(temp, target)  # replaces a symlink itself, never its target
        else:
            os.link(temp, target)  # fails if the name appeared meanwhile: never clobbers
            os.unlink(temp)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise Refused(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def adapter_dir(directory: str | Path, *, force: bool) -> Path:
    """The folder to write adapter_config.json in (created); Refused next to trained weights without force."""
    folder = Path(directory)
    try:
        if folder.is_symlink() and not force:
            raise Refused(f"{folder} is a symbolic link; pass --force to write through it")
        if folder.exists() and not folder.is_dir():
            raise Refused(f"{folder} exists and is not a directory")
        weights = [w for w in WEIGHT_FILES if (folder / w).exists()]
        if weights and not force:
            raise Refused(
                f"{folder} holds trained weights ({', '.join(weights)}); their adapter_config.json describes "
                "them, and replacing it could make the adapter load wrongly. Pass --force if that is intended"
            )
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Refused(f"cannot write to {folder}: {exc.strerror or exc}") from None
    return folder

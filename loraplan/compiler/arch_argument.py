"""Check an explicit `--arch` before anything runs: a value that names nothing is a usage error.

`validate` resolves architectures only when it can do so offline and without torch, and stays
quiet otherwise; that must not let `--arch garbage.json`, `--arch {}`-files or a typo'd path pass
as if they had been checked. A flag the user gave is checked up front, whatever the configs say.
"""

from __future__ import annotations

from pathlib import Path


def arch_argument_problem(name: str) -> str | None:
    """Why `--arch name` can name no architecture (None when it may: a file, catalog or hub name)."""
    from loraplan.compiler.catalog import lookup
    from loraplan.compiler.sources.hf_cache import is_hub_id
    from loraplan.errors import LoraplanError

    if not name.strip():
        return "is empty"
    try:
        path = Path(name).expanduser()
        exists = path.exists() or path.is_symlink()
    except (OSError, ValueError, RuntimeError) as exc:
        return f"is not a usable path: {exc}"
    if exists:
        from loraplan.compiler.sources.from_config import read_config_dict

        try:
            data, where = read_config_dict(path)
        except LoraplanError as exc:
            return str(exc).splitlines()[0]
        if not isinstance(data.get("model_type"), str) or not data["model_type"]:
            return f"{where} is not a transformers config.json (it has no `model_type`)"
        return None
    if lookup(name) is not None or is_hub_id(name):
        return None
    return "is no file or folder, no catalog name (`loraplan archs`) and no hub id (`org/name`)"

"""Find a hub id's config.json in the local Hugging Face cache: plain file reads, never the network.

The cache layout is `<hub cache>/models--<org>--<name>/snapshots/<commit>/config.json`, with
`refs/main` naming the commit `from_pretrained` would use. The hub cache is `HF_HUB_CACHE`, else
`HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (the
order huggingface_hub uses); huggingface_hub itself is not imported.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def hub_cache_dirs() -> list[Path]:
    """Hub cache folders to search, most specific first (duplicates removed)."""
    env = os.environ
    candidates: list[Path] = []
    if env.get("HF_HUB_CACHE"):
        candidates.append(Path(env["HF_HUB_CACHE"]))
    if env.get("HUGGINGFACE_HUB_CACHE"):
        candidates.append(Path(env["HUGGINGFACE_HUB_CACHE"]))
    if env.get("HF_HOME"):
        candidates.append(Path(env["HF_HOME"]) / "hub")
    xdg = env.get("XDG_CACHE_HOME")
    candidates.append((Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub")
    seen: set[str] = set()
    out = []
    for c in candidates:
        key = str(c.expanduser())
        if key not in seen:
            seen.add(key)
            out.append(c.expanduser())
    return out


def is_hub_id(name: str) -> bool:
    """`org/name` shaped (what the cache can hold), not a path."""
    return bool(_HUB_ID.match(name)) and ".." not in name


def find_cached_config(hub_id: str, revision: str = "main") -> Path | None:
    """Path of the cached config.json of `hub_id`: the `revision` ref's snapshot; for main (no pin)
    without a ref, the newest snapshot."""
    if not is_hub_id(hub_id):
        return None
    folder_name = "models--" + hub_id.replace("/", "--")
    for cache in hub_cache_dirs():
        repo = _find_repo(cache, folder_name)
        if repo is None:
            continue
        snapshots = repo / "snapshots"
        ref = repo / "refs" / revision
        try:
            commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else revision
        except OSError:
            commit = revision
        pinned = snapshots / commit / "config.json"
        if pinned.is_file():
            return pinned
        if revision != "main":  # a pinned revision is that snapshot or nothing
            continue
        found = sorted(
            (p for p in snapshots.glob("*/config.json") if p.is_file()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        if found:
            return found[0]
    return None


def _find_repo(cache: Path, folder_name: str) -> Path | None:
    """The repo folder; hub ids are case-insensitive on the hub, folders are not."""
    exact = cache / folder_name
    if exact.is_dir():
        return exact
    try:
        lowered = folder_name.lower()
        for child in cache.iterdir():
            if child.name.lower() == lowered and child.is_dir():
                return child
    except OSError:
        return None
    return None

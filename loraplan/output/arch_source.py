"""One line that says where a plan's architecture came from (every plan format prints it).

catalog entry (and, for an alias, what it is an alias of and why), HF cache, hub (revision and
commit), a local file, or a live module; a pre-quantized checkpoint's stored format on its own line.
"""

from __future__ import annotations

from typing import Any


def _commit(origin: dict[str, Any]) -> str:
    commit = origin.get("commit")
    return f", commit {commit[:12]}" if isinstance(commit, str) and commit else ""


def source_text(origin: dict[str, Any] | None) -> str:
    """`origin` is Plan.architecture_source (compiler/resolve.py fills it)."""
    o = origin or {}
    text = _source(o)
    return f"{text}; patched as {o['variant']}" if o.get("variant") else text


def _source(o: dict[str, Any]) -> str:
    kind = o.get("kind")
    same = f" (same content as catalog entry {o['same_as_catalog']})" if o.get("same_as_catalog") else ""
    if kind == "catalog":
        text = f"bundled catalog: {o.get('entry')}"
        if o.get("alias"):
            text += f"; {o['alias']} is planned as its alias: {o.get('alias_evidence') or 'listed in the catalog'}"
        return text
    if kind == "hf-cache":
        return f"local Hugging Face cache: {o.get('path')} (revision {o.get('revision', 'main')}{_commit(o)}){same}"
    if kind == "hub":
        return (f"hub: {o.get('endpoint', '')}/{o.get('name', '')}, revision {o.get('revision', 'main')}"
                f"{_commit(o)} (config.json only, cached at {o.get('path')}){same}")
    if kind == "file":
        return f"file: {o.get('path')}{same}"
    if kind == "module":
        return f"live module: {o.get('class', 'nn.Module')}"
    return str(kind or "unknown")


def stored_text(origin: dict[str, Any] | None) -> str | None:
    """The stored weight format of a pre-quantized checkpoint, or None."""
    fmt = (origin or {}).get("quantization")
    if not fmt:
        return None
    from loraplan.compiler.prequantized import describe

    return f"pre-quantized: {describe(fmt)} (from {fmt.get('source')})"

"""Pydantic validation errors -> located Diagnostics, one per problem, with did-you-mean.

Pydantic reports union members separately and names them in `loc`; users only care about the
key in their file, so errors are grouped by the path that exists in the data.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from loraplan.schema.diagnostic import Diagnostic
from loraplan.schema.yaml_source import SourceDoc

TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "int_from_float": "an integer",
    "none_required": "empty",
}
RANGE_TYPES = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "too_short",
    "too_long",
    "string_too_short",
    "string_too_long",
    "finite_number",
}


def _data_path(data: Any, loc: tuple) -> tuple:
    """The part of pydantic's `loc` that indexes real data (drops union member tags)."""
    path: list = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not _is_tag(part):
            path.append(part)  # a key that is missing from the data
            node = None
        # else: a union tag such as 'list[str]' or 'function-after[...]': skip it
    return tuple(path)


def _is_tag(part: str) -> bool:
    return "[" in part or part in {"str", "int", "float", "bool", "list", "dict", "none"}


def _model_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The pydantic model class whose fields sit at `path` (for did-you-mean)."""
    current: Any = model
    for part in path:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        current = _first_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _first_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def suggest(word: str, options: list[str]) -> str | None:
    matches = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _label(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "config"


def to_diagnostics(
    exc: ValidationError, doc: SourceDoc, root: type[BaseModel], labels: dict[tuple, str] | None = None
) -> list[Diagnostic]:
    """Map pydantic errors to diagnostics placed at the key or value they concern.

    `labels` renames native paths for messages (the Axolotl dialect shows `lora_r`, not `lora.r`).
    """
    labels = labels or {}
    grouped: dict[tuple, list[dict]] = {}
    for err in exc.errors(include_url=False):
        path = _data_path(doc.data, tuple(err["loc"]))
        grouped.setdefault((path, err["type"] == "extra_forbidden"), []).append(err)
    diagnostics = []
    for (path, _), errors in grouped.items():
        diagnostics.append(_one(path, errors, doc, root, labels))
    return diagnostics


def _one(path: tuple, errors: list[dict], doc: SourceDoc, root: type[BaseModel], labels: dict) -> Diagnostic:
    err = errors[0]
    kind = err["type"]
    name = labels.get(path, _label(path))
    if kind == "extra_forbidden":
        parent = _model_at(root, path[:-1])
        options = sorted(parent.model_fields) if parent else []
        guess = suggest(str(path[-1]), options)
        hint = f"did you mean '{guess}'?" if guess else (f"known keys: {', '.join(options)}" if options else None)
        return Diagnostic("LP201", "error", f"unknown key '{name}'", hint=hint).at(doc.key_span(path), doc.file)
    if kind == "missing":
        return Diagnostic("LP202", "error", f"missing required key '{name}'", hint=f"add `{path[-1]}:`").at(
            doc.key_span(path[:-1]) if len(path) > 1 else doc.span(()), doc.file
        )
    span = doc.span(path)
    types = [e["type"] for e in errors]
    if all(t in TYPE_WORDS for t in types):
        wanted = " or ".join(dict.fromkeys(TYPE_WORDS[t] for t in types))
        got = type(err.get("input")).__name__ if "input" in err else "nothing"
        got = {"NoneType": "empty", "str": "a string", "int": "an integer", "float": "a number",
               "bool": "a boolean", "list": "a list", "dict": "a mapping"}.get(got, got)
        return Diagnostic("LP203", "error", f"'{name}' should be {wanted}, got {got}").at(span, doc.file)
    # Prefer the most specific error among union members (a regex or range problem over a type one).
    for e in errors:
        if e["type"] not in TYPE_WORDS:
            err, kind = e, e["type"]
            break
    msg = err["msg"]
    if kind == "regex":
        key = (err.get("ctx") or {}).get("key")
        if key is not None and (*path, key) in doc.keys:
            span = doc.key_span((*path, key))
        return Diagnostic("LP206", "error", f"'{name}': {msg}", hint="escape special characters with \\").at(
            span, doc.file
        )
    if kind in RANGE_TYPES:
        return Diagnostic("LP204", "error", f"'{name}' = {err.get('input')!r}: {msg.lower()}").at(span, doc.file)
    if kind in {"literal_error", "enum"}:
        value = err.get("input")
        options = _options(msg)
        guess = suggest(str(value), options) if options else None
        hint = f"did you mean '{guess}'?" if guess else None
        return Diagnostic("LP205", "error", f"'{name}' = {value!r}: {msg.lower()}", hint=hint).at(span, doc.file)
    return Diagnostic("LP207", "error", f"'{name}': {msg}").at(span, doc.file)


def _options(msg: str) -> list[str]:
    """Options listed in a literal error message ("Input should be 'a', 'b' or 'c'")."""
    import re

    quoted = re.findall(r"'([^']*)'", msg)
    if quoted:
        return quoted
    if ":" in msg:
        return [o.strip() for o in msg.split(":", 1)[1].split(",")]
    return []

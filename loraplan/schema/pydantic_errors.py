"""Pydantic validation errors -> located Diagnostics, one per problem, with did-you-mean.

Pydantic reports every member of a union separately and names them in `loc`; users only care
about the key in their file, so member tags are dropped, a type error is dropped when another
member got further into the value (the user meant that member), and what is left is grouped
by the path that exists in the data.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from loraplan.schema.diagnostic import Diagnostic, Span
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
KEY_TAG = "[key]"  # pydantic's marker for an error in a mapping key rather than its value


def _data_path(data: Any, loc: tuple, missing: bool = False) -> tuple:
    """The part of pydantic's `loc` that indexes real data (drops union member tags).

    A name that is not in the data is a union tag ('list[str]', 'function-after[...]'), except
    the last one of a `missing` error, which is the missing key itself.
    """
    path: list = []
    node = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            path.append(part)
            node = node[part]
        elif missing and i == len(loc) - 1 and isinstance(node, dict):
            path.append(part)
            node = None
    return tuple(path)


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


@functools.lru_cache(maxsize=64)  # the models are classes: one walk per model, not one per unknown key
def _sections(model: type[BaseModel], prefix: tuple = ()) -> list[tuple[tuple, type[BaseModel]]]:
    """Every (path, model) reachable from `model`: where each field name lives."""
    out = [(prefix, model)]
    for name, field in model.model_fields.items():
        sub = _first_model(field.annotation)
        if sub is not None and sub is not model:
            out.extend(_sections(sub, (*prefix, name)))
    return out


def suggest(word: str, options: list[str]) -> str | None:
    matches = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _label(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "config"


def _describe(value: Any) -> str:
    """'a string ('sixteen')': what the user wrote, in words."""
    words = {type(None): "empty", str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "a mapping"}
    kind = words.get(type(value), type(value).__name__)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        shown = repr(value)
        if len(shown) <= 40:
            return f"{kind} ({shown})"
    return kind


def _useful(items: list[tuple[tuple, dict]]) -> list[tuple[tuple, dict]]:
    """Drop union members' type errors where another member reached deeper into the value."""
    # Every proper prefix of every path, once: linear in the errors (20,000 unknown keys stay fast).
    prefixes = {q[:n] for q, _ in items for n in range(len(q))}
    kept = []
    for path, err in items:
        deeper = path in prefixes
        if err["type"] in TYPE_WORDS and deeper:
            continue
        kept.append((path, err))
    return kept


def to_diagnostics(
    exc: ValidationError, doc: SourceDoc, root: type[BaseModel], labels: dict[tuple, str] | None = None
) -> list[Diagnostic]:
    """Map pydantic errors to diagnostics placed at the key or value they concern.

    `labels` renames native paths for messages (the Axolotl dialect shows `lora_r`, not `lora.r`).
    """
    labels = labels or {}
    items = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        items.append((_data_path(doc.data, loc, missing=err["type"] == "missing"), err))
    grouped: dict[tuple, list[dict]] = {}
    for path, err in _useful(items):
        on_key = (bool(err["loc"]) and err["loc"][-1] == KEY_TAG) or err["type"] == "invalid_key"
        kind = "extra" if err["type"] == "extra_forbidden" else ("key" if on_key else "value")
        grouped.setdefault((path, kind), []).append(err)
    diagnostics = []
    for (path, kind), errors in grouped.items():
        if kind == "key":
            diagnostics.append(_key_error(path, errors[0], doc, labels))
        else:
            diagnostics.append(_one(path, errors, doc, root, labels))
    return diagnostics


def _unknown_key(path: tuple, doc: SourceDoc, root: type[BaseModel], name: str) -> Diagnostic:
    parent = _model_at(root, path[:-1])
    options = sorted(parent.model_fields) if parent else []
    guess = suggest(str(path[-1]), options)
    flat = _axolotl_flat_name(root, path)
    if flat:
        hint = flat
    elif guess:
        hint = f"did you mean '{guess}'?"
    else:
        homes = [p for p, m in _sections(root) if path[-1] in m.model_fields and p != path[:-1]]
        if homes:
            where = ".".join(str(p) for p in homes[0]) or "the top level"
            hint = f"'{path[-1]}' belongs under '{where}:'" if homes[0] else f"'{path[-1]}' belongs at the top level"
        else:
            hint = f"known keys: {', '.join(options)}" if options else None
    return Diagnostic("LP201", "error", f"unknown key '{name}'", hint=hint).at(doc.key_span(path), doc.file)


def _axolotl_flat_name(root: type[BaseModel], path: tuple) -> str | None:
    """`lora_r` / `lora_target_modules` at the top of a native config: Axolotl's flat names."""
    key = path[-1] if len(path) == 1 else None
    lora = _model_at(root, ("lora",))
    if not isinstance(key, str) or not key.startswith("lora_") or lora is None:
        return None
    field = key[len("lora_"):]
    if field not in lora.model_fields or field in getattr(root, "model_fields", {}):
        return None
    return f"in a native config this is `{field}` under `lora:` (`lora: {{{field}: ...}}`); `{key}` is Axolotl's name"


def _key_error(path: tuple, err: dict, doc: SourceDoc, labels: dict) -> Diagnostic:
    """An error in a mapping key (not a string, an invalid regex in rank_pattern, ...)."""
    key = path[-1] if path else None
    where = labels.get(path[:-1], _label(path[:-1]))
    span = doc.key_span(path) if path else Span(1, 1)
    if err["type"] == "regex":
        return Diagnostic("LP206", "error", f"'{where}': {err['msg']}", hint="escape special characters with \\").at(
            span, doc.file
        )
    if err["type"] in ("invalid_key", "string_type"):
        place = f"in '{where}' " if path[:-1] else ""
        return Diagnostic("LP201", "error", f"key {key!r} {place}is not a name: keys must be text",
                          hint=f"quote it: '\"{key}\": ...'").at(span, doc.file)
    return Diagnostic("LP207", "error", f"key {key!r} in '{where}': {err['msg']}").at(span, doc.file)


def _one(path: tuple, errors: list[dict], doc: SourceDoc, root: type[BaseModel], labels: dict) -> Diagnostic:
    err = errors[0]
    kind = err["type"]
    name = labels.get(path, _label(path))
    if kind == "extra_forbidden":
        return _unknown_key(path, doc, root, name)
    if kind == "missing":
        if len(path) > 1:
            span = doc.key_span(path[:-1])
        else:
            top = doc.values.get(())
            span = Span(top.line, top.column) if top else Span(1, 1)
        return Diagnostic("LP202", "error", f"missing required key '{name}'", hint=f"add `{path[-1]}:`").at(
            span, doc.file
        )
    span = doc.span(path)
    types = [e["type"] for e in errors]
    if all(t in TYPE_WORDS for t in types):
        wanted = " or ".join(dict.fromkeys(TYPE_WORDS[t] for t in types))
        got = _describe(err["input"]) if "input" in err else "nothing"
        return Diagnostic("LP203", "error", f"'{name}' should be {wanted}, got {got}").at(span, doc.file)
    # Prefer the most specific error among union members (a regex or range problem over a type one).
    for e in errors:
        if e["type"] not in TYPE_WORDS:
            err, kind = e, e["type"]
            break
    msg = err["msg"]
    if kind == "regex":
        return Diagnostic("LP206", "error", f"'{name}': {msg}", hint="escape special characters with \\").at(
            span, doc.file
        )
    if kind in RANGE_TYPES:
        return Diagnostic("LP204", "error", f"'{name}' = {err.get('input')!r}: {msg.lower()}").at(span, doc.file)
    if kind in {"literal_error", "enum"}:
        value = err.get("input")
        hint = _choice_hint(path, value, _options(msg))
        return Diagnostic("LP205", "error", f"'{name}' = {value!r}: {msg.lower()}", hint=hint).at(span, doc.file)
    return Diagnostic("LP207", "error", f"'{name}': {msg}").at(span, doc.file)


def _choice_hint(path: tuple, value: Any, options: list[str]) -> str | None:
    """The fix for a value that is not one of the options, as a person would say it."""
    text = str(value)
    if path[-1:] == ("adapter",) and text.lower() in ("dora", "qdora"):
        base = "qlora" if text.lower() == "qdora" else "lora"
        return f"DoRA is an option of LoRA: set `adapter: {base}` and `use_dora: true` under `lora:`"
    # A family name (`adamw`) names several options: list them all, not the closest spelling.
    family = [o for o in options if text and text.lower() in o.lower().split("_")]
    if len(family) > 1:
        return f"did you mean one of {', '.join(repr(o) for o in family)}?"
    guess = suggest(text, options) if options else None
    return f"did you mean '{guess}'?" if guess else None


def _options(msg: str) -> list[str]:
    """Options listed in a literal error message ("Input should be 'a', 'b' or 'c'")."""
    quoted = re.findall(r"'([^']*)'", msg)
    if quoted:
        return quoted
    if ":" in msg:
        return [o.strip() for o in msg.split(":", 1)[1].split(",")]
    return []

"""JSON Schema of the native config, for editors (yaml-language-server) and other tools.

Generated from `loraplan.schema.config.Config`, so the pydantic Field descriptions are the single
source of every description. Pydantic emits draft 2020-12; yaml-language-server understands
draft-07 best, so the output is rewritten into the draft-07 subset: `definitions` instead of
`$defs`, and `$ref` never beside other keywords (draft-07 ignores such siblings).
The committed copy lives next to this file (`loraplan.schema.json`); regenerate it with
`loraplan schema > loraplan/schema/loraplan.schema.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
COMMITTED = Path(__file__).with_name("loraplan.schema.json")
# Keywords that draft-07 does not know; none may appear in the output.
NOT_DRAFT_07 = frozenset(
    {
        "$defs",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "prefixItems",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedItems",
        "unevaluatedProperties",
        "minContains",
        "maxContains",
        "contentSchema",
        "$vocabulary",
    }
)


def generate() -> dict[str, Any]:
    """The draft-07 JSON Schema of `Config`."""
    from loraplan.schema.config import Config

    raw = Config.model_json_schema(ref_template="#/definitions/{model}", mode="validation")
    definitions = raw.pop("$defs", {})
    root = _rewrite(raw, top=True)
    root.pop("title", None)
    return {
        "$schema": DRAFT_07,
        "title": "loraplan config",
        **root,
        "definitions": {name: _rewrite(body, top=True) for name, body in sorted(definitions.items())},
    }


def _rewrite(node: Any, top: bool = False) -> Any:
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and not top:
            continue  # pydantic's "Lora Alpha"-style titles only repeat the key
        if key == "properties":
            out[key] = {name: _rewrite(prop) for name, prop in value.items()}
        elif key in ("default", "examples", "const", "enum"):
            out[key] = value  # data, not schema
        else:
            out[key] = _rewrite(value)
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def render() -> str:
    """The schema as committed: 2-space indented JSON with a final newline."""
    return json.dumps(generate(), indent=2, ensure_ascii=False) + "\n"


def committed() -> str:
    return COMMITTED.read_text(encoding="utf-8")

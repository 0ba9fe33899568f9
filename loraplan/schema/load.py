"""Load a config file: YAML text -> (dialect translation) -> Config + located diagnostics.

Dialects are translated into the native tree *before* validation, carrying source positions,
so every later finding points into the file the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from loraplan.schema import axolotl
from loraplan.schema.config import Config
from loraplan.schema.diagnostic import Diagnostic, has_errors, sort_diagnostics
from loraplan.schema.pydantic_errors import to_diagnostics
from loraplan.schema.rules import check
from loraplan.schema.yaml_source import SourceDoc, parse_text, read_source

Dialect = Literal["auto", "native", "axolotl"]


@dataclass
class LoadResult:
    """A loaded config (None when it has errors that stop validation) and every finding."""

    file: str
    config: Config | None
    source: SourceDoc | None
    dialect: Literal["native", "axolotl"] | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    labels: dict[tuple, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.config is not None and not has_errors(self.diagnostics)


def detect_dialect(data: dict) -> Literal["native", "axolotl"]:
    """Axolotl configs are flat (`lora_r`, `lora_target_modules`, ...); native ones have `lora:`."""
    if isinstance(data.get("lora"), dict):
        return "native"
    if any(isinstance(k, str) and k in axolotl.MARKER_KEYS for k in data):
        return "axolotl"
    return "native"


def validate_source(doc: SourceDoc, dialect: Dialect = "auto") -> LoadResult:
    chosen = detect_dialect(doc.data) if dialect == "auto" else dialect
    diagnostics: list[Diagnostic] = []
    labels: dict[tuple, str] = {}
    native = doc
    if chosen == "axolotl":
        native, found, labels = axolotl.translate(doc)
        diagnostics.extend(found)
    config = None
    try:
        config = Config.model_validate(native.data)
    except ValidationError as exc:
        diagnostics.extend(to_diagnostics(exc, native, Config, labels))
    if config is not None and any(d.code == "LP403" for d in diagnostics):
        config = None  # an Axolotl config without a LoRA adapter: nothing to plan
    if config is not None:
        found = check(config, native)
        diagnostics.extend(axolotl.reword(found, labels) if chosen == "axolotl" else found)
    return LoadResult(doc.file, config, native, chosen, sort_diagnostics(diagnostics), labels)


def load_text(text: str, file: str = "<string>", dialect: Dialect = "auto") -> LoadResult:
    doc, diagnostics = parse_text(text, file)
    return _finish(file, doc, diagnostics, dialect)


def load_file(path: str | Path, dialect: Dialect = "auto") -> LoadResult:
    doc, diagnostics = read_source(path)
    return _finish(str(path), doc, diagnostics, dialect)


def _finish(file: str, doc: SourceDoc | None, diagnostics: list[Diagnostic], dialect: Dialect) -> LoadResult:
    if doc is None:
        return LoadResult(file, None, None, None, sort_diagnostics(diagnostics))
    result = validate_source(doc, dialect)
    result.diagnostics = sort_diagnostics(diagnostics + result.diagnostics)
    if has_errors(diagnostics):
        result.config = None  # duplicate keys etc.: the data is not what the user believes it is
    return result

"""One record for every finding of every layer: code, severity, message, location, hint.

Keeping a single type means every output format (text, JSON, GitHub, SARIF) renders findings
from the YAML loader, the schema, the compiler and the runtime the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Span:
    """A 1-based region of a source file (end is inclusive of the last character's column + 1)."""

    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    end_line: int | None = None
    end_column: int | None = None
    hint: str | None = None

    def at(self, span: Span | None, file: str | None = None) -> Diagnostic:
        """The same finding placed at `span` (and `file`, when given)."""
        if span is None:
            return replace(self, file=file or self.file)
        return replace(
            self,
            file=file or self.file,
            line=span.line,
            column=span.column,
            end_line=span.end_line,
            end_column=span.end_column,
        )

    def with_severity(self, severity: Severity) -> Diagnostic:
        return replace(self, severity=severity)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Diagnostic:
        fields = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in fields})

    def sort_key(self) -> tuple:
        return (
            self.file or "",
            self.line or 0,
            self.column or 0,
            SEVERITY_ORDER.get(self.severity, 9),
            self.code,
            self.message,
        )


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def sort_diagnostics(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Stable, de-duplicated order: by file, position, severity, code."""
    seen: set[Diagnostic] = set()
    unique = []
    for d in diagnostics:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    return sorted(unique, key=Diagnostic.sort_key)

"""Exceptions of the Python API. Each carries the diagnostics that explain it."""

from __future__ import annotations

from loraplan.schema.diagnostic import Diagnostic


class LoraplanError(Exception):
    """Base error of loraplan; `diagnostics` lists every finding behind it."""

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None):
        self.diagnostics = list(diagnostics or [])
        details = "\n".join(
            (f"  {d.file or '<config>'}:{d.line or '?'}:{d.column or '?'}: " if d.file or d.line else "  ")
            + f"{d.code} {d.message}"
            for d in self.diagnostics
            if d.severity == "error"
        )
        super().__init__(f"{message}\n{details}" if details else message)


class ConfigError(LoraplanError):
    """A config that did not load or validate."""


class ResolveError(LoraplanError):
    """An architecture that could not be resolved offline."""


class PlanMismatchError(LoraplanError):
    """A model or an adapted model that does not match the plan."""

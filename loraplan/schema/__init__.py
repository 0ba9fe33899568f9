"""Schema layer: YAML -> Config with located diagnostics. Imports no torch, transformers or peft."""

from loraplan.schema.config import Config, LoraSection, QuantizationSection, TrainingSection
from loraplan.schema.diagnostic import Diagnostic, Span, has_errors
from loraplan.schema.load import LoadResult, load_file, load_text

__all__ = [
    "Config",
    "Diagnostic",
    "LoadResult",
    "LoraSection",
    "QuantizationSection",
    "Span",
    "TrainingSection",
    "has_errors",
    "load_file",
    "load_text",
]

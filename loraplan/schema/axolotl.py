"""Axolotl dialect (placeholder until the translator lands): flat keys -> native tree."""

from __future__ import annotations

from loraplan.schema.diagnostic import Diagnostic
from loraplan.schema.yaml_source import SourceDoc

MARKER_KEYS = frozenset({"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_linear"})


def translate(doc: SourceDoc) -> tuple[SourceDoc, list[Diagnostic], dict[tuple, str]]:
    raise NotImplementedError

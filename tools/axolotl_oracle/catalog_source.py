"""config.json files for hub ids, read from loraplan's bundled catalog (the oracle never downloads).

loraplan's catalog lookup is torch-free and imports nothing of Axolotl; here it is only a data source:
the hub id (or alias) a corpus config names -> the published config.json transformers builds from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Found:
    config_file: str  # the catalog entry (path under loraplan/compiler/catalog/configs)
    hf_config: str  # the config.json transformers reads (a variant's base config)
    text: str


def resolve(name: str | None, *, trust_remote_code: bool, gptq: bool = False) -> Found | str:
    """The config.json for `name`, or the reason it is unresolved offline."""
    from transformers import CONFIG_MAPPING

    from loraplan.compiler.catalog import CONFIGS_DIR, lookup

    if not name:
        return "no base_model"
    entry = lookup(name)
    if entry is None:
        return f"no config.json for '{name}' in loraplan's bundled catalog"
    hf_config = entry.base_config or entry.config_file
    text = (CONFIGS_DIR / hf_config).read_text(encoding="utf-8")
    data = json.loads(text)
    model_type = data.get("model_type")
    if trust_remote_code and data.get("auto_map"):
        return (
            f"'{name}' ({entry.config_file}) has auto_map and the config sets trust_remote_code: true, "
            "so transformers would run the hub repository's remote code, which is not available offline"
        )
    if gptq and (data.get("quantization_config") or {}).get("quant_method") != "gptq":
        return (
            f"'{name}' is a GPTQ checkpoint whose config.json carries a gptq quantization_config; loraplan's "
            f"catalog maps it to {entry.config_file}, which has none, and Axolotl's check_model_config would "
            "refuse that stand-in"
        )
    if model_type not in CONFIG_MAPPING:
        return f"model_type '{model_type}' of '{name}' is not in transformers' CONFIG_MAPPING (needs remote code)"
    return Found(entry.config_file, hf_config, text)

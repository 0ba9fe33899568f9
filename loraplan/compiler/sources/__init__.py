"""Where an Architecture comes from: a live module, a config.json, or the local HF cache.

Importing this package imports no torch; the builders import torch/transformers when called.
"""

from loraplan.compiler.sources.from_config import from_config_json
from loraplan.compiler.sources.from_module import from_module
from loraplan.compiler.sources.hf_cache import find_cached_config

__all__ = ["find_cached_config", "from_config_json", "from_module"]

"""Runtime: load a base model as the config says, apply a plan through PEFT, verify it, export.

load.py (local folders, dtype, bitsandbytes) and kbit.py (k-bit preparation without a blanket
fp32 upcast); apply.py (refuse a model the plan was not made for, inject, verify); verify.py
(adapted model == plan); mismatch.py (what differs from the plan's architecture); export.py
(the adapter_config.json, without a model); fast/ (fused training path).
Importing this package imports neither torch nor PEFT; the functions do, when called.
`apply` and `verify` are not re-exported here: their names are those of their modules (use
`loraplan.apply`, or `from loraplan.runtime.apply import apply`).
"""

from loraplan.runtime.quiet import quiet_bitsandbytes_import

quiet_bitsandbytes_import()  # before any import of bitsandbytes (transformers imports it on a 4-bit load)

from loraplan.runtime.export import adapter_config, write_adapter_config  # noqa: E402
from loraplan.runtime.kbit import prepare_for_kbit_training  # noqa: E402
from loraplan.runtime.load import bnb_config, load_model  # noqa: E402

__all__ = [
    "adapter_config",
    "bnb_config",
    "load_model",
    "prepare_for_kbit_training",
    "write_adapter_config",
]

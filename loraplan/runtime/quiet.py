"""Silence two known, harmless messages that loraplan itself triggers, and nothing else.

- bitsandbytes logs "Failed to load CPU gemm_4bit_forward from kernels-community" when it is
  imported on a CPU with AVX512-BF16 and the optional `kernels` package (a hub download) is not
  installed; it then uses its own CPU kernel, which is what loraplan wants offline.
- PEFT's PeftModel reads `model.is_gradient_checkpointing`, which transformers 5.2x deprecates
  with a FutureWarning on every `get_peft_model`; the user did not write that call.

Both filters match the exact message, so every other warning of these libraries still shows.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

_BNB_LOGGER = "bitsandbytes.backends.cpu.ops"
_BNB_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"
_CHECKPOINTING = r"`is_gradient_checkpointing` is deprecated"


class _DropKernelsNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_BNB_MESSAGE)


def quiet_bitsandbytes_import() -> None:
    """Install the filter before bitsandbytes is imported (idempotent; the logger may not exist yet)."""
    logger = logging.getLogger(_BNB_LOGGER)
    if not any(isinstance(f, _DropKernelsNotice) for f in logger.filters):
        logger.addFilter(_DropKernelsNotice())


@contextlib.contextmanager
def no_checkpointing_alias_warning() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CHECKPOINTING, category=FutureWarning)
        yield

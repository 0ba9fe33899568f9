"""Two known messages loraplan triggers are silenced; everything else still shows (issue 13)."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest

from loraplan.runtime import quiet

NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


def _import_stderr(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_bitsandbytes_kernels_notice_is_silenced():
    pytest.importorskip("bitsandbytes")
    assert NOTICE not in _import_stderr("import loraplan.runtime, bitsandbytes")
    from bitsandbytes.functional import has_avx512bf16

    if has_avx512bf16():  # the notice exists only there: check that it would have shown
        import importlib.util

        if importlib.util.find_spec("kernels") is None:
            assert NOTICE in _import_stderr("import bitsandbytes")


def test_the_filter_drops_only_that_message():
    quiet.quiet_bitsandbytes_import()
    logger = logging.getLogger(quiet._BNB_LOGGER)
    make = lambda msg: logging.LogRecord(quiet._BNB_LOGGER, logging.WARNING, __file__, 1, msg, (), None)  # noqa: E731
    assert not logger.filter(make(NOTICE + ": No module named 'kernels'. Please ..."))
    assert logger.filter(make("some other warning"))
    quiet.quiet_bitsandbytes_import()  # idempotent
    assert sum(isinstance(f, quiet._DropKernelsNotice) for f in logger.filters) == 1


def test_apply_emits_no_checkpointing_alias_warning():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import loraplan
    from loraplan.schema.config import Config

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32))
    config = Config.model_validate({"base_model": "tiny", "lora": {"r": 2, "target_modules": ["q_proj"]}})
    plan = loraplan.compile(config, architecture=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loraplan.apply(plan, model)
        warnings.warn("a real FutureWarning", FutureWarning, stacklevel=1)  # still shown
    messages = [str(w.message) for w in caught]
    assert not any("is_gradient_checkpointing" in m for m in messages), messages
    assert "a real FutureWarning" in messages

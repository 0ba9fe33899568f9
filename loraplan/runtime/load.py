"""Load a base model from a local folder exactly as the config says: dtype, bitsandbytes, class.

Local only: loraplan never downloads. A hub id or a missing folder is refused with a message
saying how to get a local copy. Quantised loads are prepared for k-bit training by
`loraplan.runtime.kbit.prepare_for_kbit_training` (no blanket fp32 upcast, unlike PEFT's).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loraplan.errors import LoraplanError
from loraplan.runtime.kbit import enable_gradient_checkpointing, prepare_for_kbit_training

if TYPE_CHECKING:
    from loraplan.schema.config import Config

# PEFT task types -> the transformers Auto class used when the folder names no architecture.
_AUTO_BY_TASK = {
    None: "AutoModelForCausalLM",
    "CAUSAL_LM": "AutoModelForCausalLM",
    "SEQ_CLS": "AutoModelForSequenceClassification",
    "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
    "TOKEN_CLS": "AutoModelForTokenClassification",
    "QUESTION_ANS": "AutoModelForQuestionAnswering",
    "FEATURE_EXTRACTION": "AutoModel",
}


def torch_dtype(name: str) -> Any:
    """'bfloat16' -> torch.bfloat16 (the config's dtype names are torch's)."""
    import torch

    return getattr(torch, name)


def bnb_config(config: Config) -> Any | None:
    """transformers `BitsAndBytesConfig` from `config.quantization` (None: no quantised load).

    Every field is passed through under its own name. `bnb_4bit_quant_storage` is the dtype the
    packed 4-bit weights live in: FSDP shards flat parameters of one dtype, so it must equal the
    model's dtype there (uint8 is fine on one device).
    """
    q = config.quantization
    if q is None or not (q.load_in_4bit or q.load_in_8bit):
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=q.load_in_4bit,
        load_in_8bit=q.load_in_8bit,
        bnb_4bit_quant_type=q.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=q.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=torch_dtype(q.bnb_4bit_compute_dtype),
        bnb_4bit_quant_storage=torch_dtype(q.bnb_4bit_quant_storage),
        llm_int8_threshold=q.llm_int8_threshold,
        llm_int8_skip_modules=list(q.llm_int8_skip_modules) if q.llm_int8_skip_modules else None,
        llm_int8_enable_fp32_cpu_offload=q.llm_int8_enable_fp32_cpu_offload,
        llm_int8_has_fp16_weight=q.llm_int8_has_fp16_weight,
    )


def check_local_folder(path: str | os.PathLike[str]) -> Path:
    """The model folder, or a LoraplanError saying why it is not one (hub ids are refused)."""
    folder = Path(path).expanduser()
    text = str(path)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise LoraplanError(f"{text}: no config.json in this folder; it is not a transformers model folder")
        return folder
    if folder.exists():
        raise LoraplanError(f"{text}: is a file; load_model needs the model's folder (with config.json)")
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if looks_like_hub_id:
        raise LoraplanError(
            f"{text}: no such folder; it looks like a hub id, but loraplan loads from a local folder only "
            "and never downloads; "
            f"fetch it first (e.g. `hf download {text} --local-dir models/{text.split('/')[-1]}`) "
            "and pass that folder"
        )
    raise LoraplanError(f"{text}: no such folder; load_model needs a local model folder (with config.json)")


def model_class(config: Config, folder: Path) -> Any:
    """The transformers class to build: config.model_class, else the folder's `architectures[0]`,
    else the Auto class for the config's task type."""
    import transformers

    name = config.model_class
    if name is None:
        try:
            archs = json.loads((folder / "config.json").read_text()).get("architectures") or []
        except (OSError, ValueError) as exc:
            raise LoraplanError(f"{folder}/config.json cannot be read: {exc}") from None
        name = archs[0] if archs else _AUTO_BY_TASK.get(config.lora.task_type, "AutoModelForCausalLM")
    from loraplan.compiler.sources.from_config import is_model_class

    cls = getattr(transformers, name, None) if isinstance(name, str) and name.isidentifier() else None
    if cls is not None and not is_model_class(cls, transformers):
        raise LoraplanError(
            f"model_class {name!r} is not a model class of transformers; name one such as LlamaForCausalLM"
        )
    if cls is None:
        raise LoraplanError(
            f"model class {name!r} is not in transformers {transformers.__version__}; "
            "set `model_class` in the config to a class it has"
        )
    return cls


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """HF_HUB_OFFLINE for the duration of a load (env for new imports, constant for loaded ones)."""
    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = None
    old_const = None
    try:
        from huggingface_hub import constants

        old_const = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        pass
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_const


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """transformers' own loading progress bars ("Loading weights"), on or off for one load."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    if enabled:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()


def default_device_map(quantized: bool) -> Any:
    """The current CUDA device when there is one (bitsandbytes weights must live there), else None
    (CPU); a quantised load without CUDA is refused with a pointer to bitsandbytes' CPU backend."""
    import torch

    if torch.cuda.is_available():
        return {"": torch.cuda.current_device()}
    if quantized:
        raise LoraplanError(
            "4-bit / 8-bit loading needs a CUDA GPU (bitsandbytes) and none is available; "
            "pass device_map='cpu' to use bitsandbytes' CPU backend (slow; for tests)"
        )
    return None


def load_model(
    config: Config,
    path: str | os.PathLike[str],
    *,
    device_map: Any = None,
    progress: bool = True,
    gradient_checkpointing: bool | None = None,
    **from_pretrained_kwargs: Any,
) -> Any:
    """Load the base model from the local folder `path` as `config` says, ready for `apply`.

    dtype: `config.dtype`; quantisation: `bnb_config(config)`; class: `model_class(config, path)`;
    attention: `training.attn_implementation` when the config sets it; device_map: None means the
    current CUDA device when there is one, else the CPU. Quantised models go
    through `prepare_for_kbit_training`; unquantised ones are only frozen.
    gradient_checkpointing: None follows `config.training.gradient_checkpointing`.
    Extra keyword arguments go to `from_pretrained` unchanged.
    """
    folder = check_local_folder(path)
    cls = model_class(config, folder)
    quant = bnb_config(config)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(config.dtype), "local_files_only": True}
    if quant is not None:
        kwargs["quantization_config"] = quant
    device_map = device_map if device_map is not None else default_device_map(quant is not None)
    if device_map is not None:
        kwargs["device_map"] = device_map
    if "attn_implementation" in config.training.model_fields_set:
        kwargs["attn_implementation"] = config.training.attn_implementation
    kwargs.update(from_pretrained_kwargs)
    with offline(), progress_bars(progress):
        try:
            model = cls.from_pretrained(str(folder), **kwargs)
        except (OSError, ValueError, ImportError) as exc:
            raise LoraplanError(f"{folder}: {cls.__name__}.from_pretrained failed: {exc}") from exc
    if gradient_checkpointing is None:
        gradient_checkpointing = config.training.gradient_checkpointing
    if quant is not None:
        return prepare_for_kbit_training(model, gradient_checkpointing=gradient_checkpointing)
    for p in model.parameters():
        p.requires_grad_(False)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model

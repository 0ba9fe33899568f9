"""One corpus config through Axolotl's own code: schema, normalisation, model build on meta, load_lora.

Runs in a forked child per config (record.py), because Axolotl's patches (Llama 4 linearised experts,
PEFT's ParamWrapper dropout patch, model-support registrations) change transformers/PEFT classes for
the rest of the process. The steps follow `axolotl.cli.config.load_cfg` and
`axolotl.loaders.model.ModelLoader.load` of Axolotl 0.19.0; what differs (no weights, no tokenizer,
no GPU kernels) is listed in README.md and in each golden's "oracle_notes".
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tools.axolotl_oracle import extract, trees
from tools.axolotl_oracle.catalog_source import resolve

# The machine Axolotl is assumed to run on: one Hopper GPU, or eight for configs that shard the
# model (FSDP, DeepSpeed, tensor/context parallel). `axolotl.cli.config.gpu_capabilities` probes
# these on the real host; the oracle has no GPU, so it states them.
SINGLE_GPU = {"bf16": True, "fp8": False, "tf32": True, "n_gpu": 1, "compute_capability": "sm_90"}


class StageError(Exception):
    """An exception raised by Axolotl's code at a named stage."""

    def __init__(self, stage: str, exc: BaseException):
        super().__init__(f"{stage}: {exc}")
        self.stage = stage
        self.exc = exc


class _Warnings(logging.Handler):
    """Collects Axolotl's WARNING+ log lines (what a user sees) for the golden."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:
            self.messages.append(str(record.msg))


def capabilities_for(raw: dict[str, Any]) -> dict[str, Any]:
    caps = dict(SINGLE_GPU)
    sharded = raw.get("fsdp_config") or raw.get("fsdp") or raw.get("deepspeed")
    sizes = (raw.get("tensor_parallel_size"), raw.get("context_parallel_size"))
    parallel = any(isinstance(n, int) and n > 1 for n in sizes)
    if sharded or parallel:
        caps["n_gpu"] = 8
    return caps


def _schema_class(cfg):
    """The pydantic class validate_config uses (plugins merge their argument models into it)."""
    from axolotl.integrations.config import merge_input_args
    from axolotl.utils.schemas.config import AxolotlInputConfig

    return merge_input_args()[1] if cfg.plugins else AxolotlInputConfig


def key_report(raw: dict[str, Any], cfg, schema) -> dict[str, list[str]]:
    """unknown_keys: not fields of Axolotl's schema (pydantic drops them: no effect). dropped_keys: set in
    the YAML (non-null) but absent from the validated config (unknown, or consumed by a validator such as
    flash_attention -> attn_implementation)."""
    alias: dict[str, str] = {}
    for field_name, field in schema.model_fields.items():
        alias[field_name] = field_name
        for name in (field.alias, field.validation_alias):
            if isinstance(name, str):
                alias[name] = field_name
    return {
        "unknown_keys": sorted(k for k in raw if k not in alias),
        "dropped_keys": sorted(k for k, v in raw.items() if v is not None and k not in cfg and alias.get(k) not in cfg),
    }


# Validated-config keys that decide what load_lora builds or refuses (recorded as Axolotl resolved them).
_CFG_PREFIXES = ("adapter", "lora_", "peft_", "load_in_", "bnb_", "quantize_moe", "merge_lora", "relora",
                 "model_config_type", "is_multimodal", "attn_implementation", "type_of_model", "rl",
                 "trust_remote_code", "gptq", "unfrozen_parameters", "torch_dtype", "bf16", "fp16", "fsdp_version")


def cfg_report(cfg) -> dict[str, Any]:
    keys = sorted(k for k in cfg if k.startswith(_CFG_PREFIXES) and cfg[k] is not None)
    return {k: extract.jsonable(cfg[k]) for k in keys}


def _stage(stage: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        raise StageError(stage, exc) from exc


def load_cfg(path: Path, raw: dict[str, Any], golden: dict[str, Any]):
    """axolotl.cli.config.load_cfg without its side effects (telemetry, debug log, env vars)."""
    import torch
    from axolotl.utils.config import (
        normalize_cfg_datasets,
        normalize_config,
        prepare_plugins,
        validate_config,
    )
    from axolotl.utils.dict import DictDefault

    cfg = DictDefault(raw)
    cfg.axolotl_config_path = str(path)
    caps = capabilities_for(raw)
    golden["capabilities"] = caps
    _stage("schema", prepare_plugins, cfg)
    schema = _schema_class(cfg)
    env = {"torch_version": torch.__version__.split("+", 1)[0]}
    cfg = _stage("schema", validate_config, cfg, capabilities=caps, env_capabilities=env)
    golden.update(key_report(raw, cfg, schema))

    # Architecture: the hub id Axolotl reads its config.json from, served from loraplan's catalog.
    name = cfg.base_model_config or cfg.base_model
    found = resolve(name, trust_remote_code=cfg.trust_remote_code is True, gptq=bool(cfg.gptq))
    if isinstance(found, str):
        return cfg, found
    golden["architecture"] = found.config_file
    if found.hf_config != found.config_file:
        golden["hf_config"] = found.hf_config
    tmp = tempfile.mkdtemp(prefix="axolotl-oracle-")
    (Path(tmp) / "config.json").write_text(found.text, encoding="utf-8")
    cfg.base_model_config = tmp  # offline stand-in for the hub repo: its config.json only

    _stage("normalize", normalize_config, cfg)
    _stage("normalize", normalize_cfg_datasets, cfg)
    return cfg, None


def build_model(cfg, golden: dict[str, Any]):
    """ModelLoader's class choice and pre/post-build patches, with the model built on meta."""
    import torch
    import transformers
    from axolotl.loaders.model import ModelLoader

    loader = _stage("model", ModelLoader, cfg, tokenizer=None)
    pm = loader.patch_manager
    # The pre-load patches that decide the module tree (the rest patch forward passes or kernels).
    _stage("model", pm._apply_model_support_registrations)
    _stage("model", pm._apply_model_support_pre_load_hook)
    _stage("model", pm._apply_model_specific_patches)
    _stage("model", pm._apply_tiled_mlp, cfg.model_config_type)
    _stage("model", loader._set_auto_model_loader)
    if loader.model_type and loader.model_type != "AutoModelForCausalLM" and not cfg.trust_remote_code and not cfg.gptq:
        model_cls = getattr(transformers, loader.model_type)
    else:
        model_cls = loader.auto_model_loader
    golden["loader_class"] = model_cls.__name__
    config = loader.model_config
    dtype = cfg.torch_dtype or torch.float32

    def _build():
        with torch.device("meta"):
            if model_cls.__name__.startswith("AutoModel"):
                return model_cls.from_config(config, trust_remote_code=False, dtype=dtype)
            return model_cls(config=config)

    model = _stage("model", _build)
    model.config._name_or_path = cfg.base_model  # as from_pretrained(cfg.base_model) leaves it
    model.name_or_path = cfg.base_model
    _stage("model", pm.apply_post_model_build_patches, model)
    golden["model_class"] = type(model).__name__
    return model


def notes(cfg, golden: dict[str, Any]) -> None:
    """Where the meta build differs from what Axolotl loads on a GPU (none changes the adapters' names)."""
    said: list[str] = []
    if cfg.load_in_4bit or cfg.load_in_8bit:
        golden["quantized_on_meta"] = False
        said.append(
            "bitsandbytes quantisation cannot be built on meta: the model is unquantised, so PEFT's layer class is "
            "Linear where Axolotl gets Linear4bit/Linear8bitLt; leaf names, targets, r/alpha and in/out are the "
            "same, and 'total' equals PEFT's count on the quantised model (it multiplies packed Params4bit back)"
        )
    if cfg.quantize_moe_experts:
        said.append("quantize_moe_experts (quantising fused experts while loading weights) is not applied on meta")
    if cfg.tokens or cfg.added_tokens_overrides or cfg.resize_token_embeddings_to_32x:
        said.append("no tokenizer is loaded, so the embeddings are not resized for added tokens: 'total' and "
                    "modules_to_save sizes use the config's vocab_size")
    if said:
        golden["oracle_notes"] = said


def host_shims(golden: dict[str, Any]) -> None:
    """Environment probes for optional CUDA kernels answered "installed", as on the GPU host the example
    is written for (they cannot be installed here); each config that relies on one says so."""
    import axolotl.monkeypatch.models.nemotron_h.modeling as nemotron
    import axolotl.utils.config as axolotl_config

    def mamba_kernels() -> bool:
        golden.setdefault("host_assumptions", []).append(
            "mamba-ssm and causal-conv1d (Mamba2 kernels taking seq_idx) are installed: without them Axolotl "
            "refuses sample packing / context parallelism on this model (RuntimeError in the model loader)"
        )
        return True

    nemotron.mamba2_seq_idx_kernels_available = mamba_kernels
    # normalize_config's `bf16: auto` probes the local GPU; answer as the stated capabilities do.
    axolotl_config.is_torch_bf16_gpu_available = lambda: SINGLE_GPU["bf16"]


def ring_flash_attn_used(golden: dict[str, Any]) -> None:
    import sys

    if "ring_flash_attn" in sys.modules:
        golden.setdefault("host_assumptions", []).append(
            "ring-flash-attn is installed (stubbed, tools/axolotl_oracle/stubs.py): without it Axolotl's schema "
            "refuses context_parallel_size > 1 (ImportError)"
        )


def meta_shims(golden: dict[str, Any]) -> None:
    """PEFT steps that need real weights: skipped on meta, with a note (shapes and names are unchanged)."""
    from peft.tuners.lora.layer import LoraLayer

    real = LoraLayer.loftq_init

    def loftq_init(self, *args, **kwargs):
        weight = getattr(self.get_base_layer(), "weight", None)
        if weight is not None and weight.is_meta:
            note = "LoftQ's weight initialisation needs the real weights: skipped on meta (LoRA shapes unchanged)"
            if note not in golden.setdefault("oracle_notes", []):
                golden["oracle_notes"].append(note)
            return None
        return real(self, *args, **kwargs)

    LoraLayer.loftq_init = loftq_init


def run(examples: Path, rel: str) -> dict[str, Any]:
    """The golden for one config (never raises for an Axolotl refusal)."""
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = examples / rel
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    golden: dict[str, Any] = {"config": rel, "base_model": raw.get("base_model")}
    if raw.get("base_model_config"):
        golden["base_model_config"] = raw.get("base_model_config")
    warn = _Warnings()
    logging.getLogger("axolotl").addHandler(warn)
    host_shims(golden)
    try:
        cfg, unresolved = load_cfg(path, raw, golden)
        if unresolved:
            golden.update(status="unresolved", reason=unresolved)
            return golden
        golden["axolotl_cfg"] = cfg_report(cfg)
        notes(cfg, golden)
        meta_shims(golden)
        model = build_model(cfg, golden)
        try:
            golden["_tree"] = trees.diff(model, golden["architecture"])
        except Exception as exc:
            golden["_tree"] = {"error": f"{type(exc).__name__}: {exc}"}
        extract.record_load_lora(model, cfg, golden)
        golden["status"] = "ok"
    except StageError as err:
        golden["status"] = "axolotl_error"
        golden["error"] = {"stage": err.stage, "type": type(err.exc).__name__, "message": extract.clean(str(err.exc))}
    finally:
        ring_flash_attn_used(golden)
        logging.getLogger("axolotl").removeHandler(warn)
        golden["warnings"] = sorted({extract.clean(m) for m in warn.messages})
    return golden


if __name__ == "__main__":  # debugging aid: python -m tools.axolotl_oracle.run_config <rel>
    import sys

    from tools.axolotl_oracle import stubs

    stubs.install()
    print(json.dumps(run(Path(sys.argv[1]), sys.argv[2]), indent=1, sort_keys=True, default=str))

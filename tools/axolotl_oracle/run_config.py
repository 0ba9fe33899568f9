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
        except Exception:  # noqa: BLE001 - a malformed log call must not lose the config
            self.messages.append(str(record.msg))


def capabilities_for(raw: dict[str, Any]) -> dict[str, Any]:
    caps = dict(SINGLE_GPU)
    sharded = raw.get("fsdp_config") or raw.get("fsdp") or raw.get("deepspeed")
    parallel = any(isinstance(raw.get(k), int) and raw[k] > 1 for k in ("tensor_parallel_size", "context_parallel_size"))
    if sharded or parallel:
        caps["n_gpu"] = 8
    return caps


def dropped_keys(raw: dict[str, Any], cfg) -> list[str]:
    """Keys set (non-null) in the YAML that Axolotl's validated config no longer carries."""
    from axolotl.utils.schemas.config import AxolotlInputConfig

    alias = {}
    for field_name, field in AxolotlInputConfig.model_fields.items():
        for name in (field.alias, field.validation_alias):
            if isinstance(name, str):
                alias[name] = field_name
    return sorted(k for k, v in raw.items() if v is not None and k not in cfg and alias.get(k) not in cfg)


def _stage(stage: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every refusal is recorded, never swallowed
        raise StageError(stage, exc) from exc


def load_cfg(path: Path, raw: dict[str, Any], golden: dict[str, Any]):
    """axolotl.cli.config.load_cfg without its side effects (telemetry, debug log, env vars)."""
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
    cfg = _stage("schema", validate_config, cfg, capabilities=caps, env_capabilities={"torch_version": "2.13.0"})
    golden["dropped_keys"] = dropped_keys(raw, cfg)

    # Architecture: the hub id Axolotl reads its config.json from, served from loraplan's catalog.
    name = cfg.base_model_config or cfg.base_model
    found = resolve(name, trust_remote_code=cfg.trust_remote_code is True)
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
    _stage("model", pm.apply_post_model_build_patches, model)
    golden["model_class"] = type(model).__name__
    return model


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
    try:
        cfg, unresolved = load_cfg(path, raw, golden)
        if unresolved:
            golden.update(status="unresolved", reason=unresolved)
            return golden
        model = build_model(cfg, golden)
        try:
            golden["_tree"] = trees.diff(model, golden["architecture"])
        except Exception as exc:  # noqa: BLE001 - an oracle-side failure, reported by record.py
            golden["_tree"] = {"error": f"{type(exc).__name__}: {exc}"}
        extract.record_load_lora(model, cfg, golden)
        golden["status"] = "ok"
    except StageError as err:
        golden["status"] = "axolotl_error"
        golden["error"] = {"stage": err.stage, "type": type(err.exc).__name__, "message": extract.clean(str(err.exc))}
    finally:
        logging.getLogger("axolotl").removeHandler(warn)
        golden["warnings"] = sorted({extract.clean(m) for m in warn.messages})
    return golden


if __name__ == "__main__":  # debugging aid: python -m tools.axolotl_oracle.run_config <rel>
    import sys

    from tools.axolotl_oracle import stubs

    stubs.install()
    print(json.dumps(run(Path(sys.argv[1]), sys.argv[2]), indent=1, sort_keys=True, default=str))

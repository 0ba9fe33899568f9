"""Run Axolotl's load_adapter on a meta model and turn what PEFT built into the golden's fields."""

from __future__ import annotations

import copy
import enum
import re
from typing import Any

_TMP = re.compile(r"/tmp/axolotl-oracle-[A-Za-z0-9_]+")
_ADDR = re.compile(r" at 0x[0-9a-fA-F]+")
PREFIX = "base_model.model."


def clean(text: str) -> str:
    """Messages without the oracle's temp dir or object addresses (goldens are deterministic)."""
    return _ADDR.sub("", _TMP.sub("<config.json dir>", text))


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, str):
        return clean(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if hasattr(value, "__dataclass_fields__"):
        return jsonable({k: getattr(value, k) for k in value.__dataclass_fields__})
    return repr(value)


def config_dict(config) -> dict[str, Any]:
    data = jsonable(config.to_dict())
    if isinstance(data.get("target_modules"), list):
        data["target_modules"] = sorted(data["target_modules"])
    return data


def _strip(name: str) -> str:
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    while name.endswith(".base_layer"):
        name = name[: -len(".base_layer")]
    return name


def _layer_fields(mod, adapter: str) -> dict[str, Any]:
    dropout = mod.lora_dropout[adapter] if adapter in getattr(mod, "lora_dropout", {}) else None
    return {
        "layer": type(mod).__name__,
        "r": mod.r[adapter],
        "alpha": mod.lora_alpha[adapter],
        "scaling": mod.scaling[adapter],
        "in": mod.in_features,
        "out": mod.out_features,
        "dropout": float(getattr(dropout, "p", 0.0)) if dropout is not None else None,
        "use_dora": bool(mod.use_dora.get(adapter, False)),
    }


def describe_peft(peft_model, golden: dict[str, Any], adapter: str = "default") -> None:
    from peft.tuners.lora.layer import LoraLayer, ParamWrapper
    from peft.utils.other import ModulesToSaveWrapper

    try:
        from peft.tuners.trainable_tokens.layer import TrainableTokensWrapper
    except ImportError:  # pragma: no cover - older PEFT
        TrainableTokensWrapper = ()

    modules: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    to_save: list[str] = []
    tokens: list[str] = []
    for name, mod in peft_model.named_modules():
        if isinstance(mod, ParamWrapper):
            parameters[f"{_strip(name)}.{mod.parameter_name}"] = _layer_fields(mod, adapter)
        elif isinstance(mod, LoraLayer) and adapter in mod.r:
            modules[_strip(name)] = _layer_fields(mod, adapter)
        elif isinstance(mod, ModulesToSaveWrapper):
            to_save.append(_strip(name))
        elif TrainableTokensWrapper and isinstance(mod, TrainableTokensWrapper):
            tokens.append(_strip(name))
    trainable, total = peft_model.get_nb_trainable_parameters()
    golden.update(
        modules=dict(sorted(modules.items())),
        parameters=dict(sorted(parameters.items())),
        modules_to_save=sorted(to_save),
        trainable=int(trainable),
        total=int(total),
    )
    if tokens:
        golden["trainable_tokens"] = sorted(tokens)
    applied = config_dict(peft_model.peft_config[adapter])
    built = dict(golden.get("lora_config") or {}, base_model_name_or_path=applied.get("base_model_name_or_path"))
    if applied != built:  # get_peft_model always fills base_model_name_or_path; other changes are PEFT's
        golden["peft_config_applied"] = applied  # what PEFT made of it (e.g. MoE target_parameters)


def record_load_lora(model, cfg, golden: dict[str, Any]) -> None:
    """Axolotl's load_adapter (load_lora, its patches) with get_peft_model watched, on `model`."""
    import peft
    import torch
    from axolotl.loaders import adapter as ax_adapter

    from tools.axolotl_oracle.run_config import StageError

    golden["linear_leaf_names"] = sorted(ax_adapter.find_all_linear_names(model))
    seen: dict[str, Any] = {}
    real = ax_adapter.get_peft_model

    def watched(m, config, *args, **kwargs):
        seen["config"] = copy.deepcopy(config)
        try:
            return real(m, config, *args, **kwargs)
        except Exception as exc:
            exc._oracle_stage = "get_peft_model"
            raise

    ax_adapter.get_peft_model = watched
    config_only = bool(cfg.adapter and cfg.rl in ("dpo", "ipo", "kto") and not cfg.merge_lora)
    try:
        # LoRA matrices are created on meta too (PEFT would allocate them on CPU, then move them to the
        # base layer's device, meta): same shapes and names, no gigabytes of CPU init for fused experts.
        with torch.device("meta"):
            peft_model, lora_config = ax_adapter.load_adapter(model, cfg, cfg.adapter, inference=False,
                                                              config_only=config_only)
    except Exception as exc:
        stage = getattr(exc, "_oracle_stage", "load_lora")
        if stage == "get_peft_model" and "config" in seen:
            golden["lora_config"] = config_dict(seen["config"])
        raise StageError(stage, exc) from exc
    finally:
        ax_adapter.get_peft_model = real
    if lora_config is None:
        raise StageError("load_lora", ValueError(f"adapter {cfg.adapter!r} built no PEFT config"))
    golden["lora_config"] = config_dict(seen.get("config", lora_config))
    if config_only:
        # Axolotl hands the config to TRL's trainer, which calls get_peft_model on the policy model.
        golden["peft_model_built_by"] = "trl (Axolotl passes the LoraConfig with config_only=True)"
        try:
            with torch.device("meta"):
                peft_model = peft.get_peft_model(model, lora_config)
        except Exception as exc:
            raise StageError("get_peft_model", exc) from exc
    describe_peft(peft_model, golden)

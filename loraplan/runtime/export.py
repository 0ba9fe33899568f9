"""The adapter_config.json a plan's adapter will have, written without a model.

It is what `PeftModel.save_pretrained` writes after `loraplan.apply` (see apply.py for why the
plan's own target fields are kept): the plan's `peft_config`, `base_model_name_or_path` (the
config's base_model), `peft_type: LORA`, `inference_mode: true`, the classifier heads PEFT adds to
`modules_to_save` for SEQ_CLS / TOKEN_CLS / QUESTION_ANS, an `auto_mapping` when there is no task
type, and every other field at the installed PEFT's default. With PEFT installed the dict comes
from `LoraConfig(**kw).to_dict()` itself; without it, from the defaults snapshot
`peft_lora_defaults.json` (taken from the PEFT version it names) with LoraConfig's own
normalisations replayed.
"""

from __future__ import annotations

import copy
import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loraplan.compiler.plan import Plan

CONFIG_NAME = "adapter_config.json"
SNAPSHOT = Path(__file__).with_name("peft_lora_defaults.json")

# peft_model.py: PeftModelFor<Task>.__init__ adds these to modules_to_save (in this order).
TASK_HEADS: dict[str, list[str]] = {
    "SEQ_CLS": ["classifier", "score"],
    "TOKEN_CLS": ["classifier", "score"],
    "QUESTION_ANS": ["qa_outputs"],
}


def _plain(value: Any) -> Any:
    """JSON-able form: enums as their value, sets as sorted lists (PEFT writes sets as lists)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set):
        return sorted(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def plan_kwargs(plan: Plan) -> dict[str, Any]:
    """The LoraConfig kwargs `apply` uses for this plan."""
    kwargs = copy.deepcopy(plan.peft_config)
    base = plan.config.get("base_model")
    if base:
        kwargs["base_model_name_or_path"] = base
    return kwargs


def _with_peft(kwargs: dict[str, Any]) -> dict[str, Any]:
    import warnings

    from peft import LoraConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LoraConfig(**kwargs).to_dict()


def _without_peft(kwargs: dict[str, Any]) -> dict[str, Any]:
    """LoraConfig(**kwargs).to_dict() replayed on the snapshot of its defaults."""
    snap = json.loads(SNAPSHOT.read_text())
    data = copy.deepcopy(snap["lora_config"])
    unknown = sorted(set(kwargs) - set(data))
    if unknown:
        raise TypeError(f"LoraConfig (PEFT {snap['peft_version']}) has no field(s) {', '.join(unknown)}")
    data.update(copy.deepcopy(kwargs))
    data["peft_type"] = "LORA"
    for key in ("target_modules", "exclude_modules"):
        if isinstance(data[key], list):
            data[key] = set(data[key])
    init = data["init_lora_weights"]
    if init != "loftq" and data["loftq_config"]:
        data["loftq_config"] = {}
    elif init == "eva" and data["eva_config"] is None:
        data["eva_config"] = dict(snap["eva_config"])
    elif init != "eva" and data["eva_config"] is not None:
        pass  # PEFT's elif chain stops here: a CorDA default is not filled in
    elif init == "corda" and data["corda_config"] is None:
        data["corda_config"] = dict(snap["corda_config"])
    if data.get("arrow_config") is not None:  # ArrowConfig's init=False fields, set by create_arrow_model
        data["arrow_config"] = {**data["arrow_config"], "task_adapter_names": None, "gks_adapter_names": None}
    return data


def _installed_peft() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("peft")
    except PackageNotFoundError:
        return None


def auto_mapping(model_class: str, model_type: str | None = None) -> dict[str, str]:
    """What save_pretrained records when there is no task type: the base class and its module.

    With transformers importable the module is the class's own; otherwise it is derived from the
    model type by transformers' layout (`transformers.models.<type>.modeling_<type>`).
    """
    parent = None
    try:
        import transformers

        cls = getattr(transformers, model_class, None)
        parent = cls.__module__ if cls is not None else None
    except ImportError:
        pass
    if parent is None and model_type:
        mt = model_type.replace("-", "_")
        parent = f"transformers.models.{mt}.modeling_{mt}"
    return {"base_model_class": model_class, "parent_library": parent or "transformers"}


def adapter_config(plan: Plan, *, use_peft: bool | None = None, model_type: str | None = None) -> dict[str, Any]:
    """The adapter_config.json content (a dict) for `plan`.

    use_peft: None uses the snapshot when no PEFT is installed or the installed one is the
    snapshot's version (same output, without PEFT's slow import), else PEFT itself; True/False
    force one (tests compare both).
    model_type: only for `auto_mapping` when transformers is absent.
    """
    kwargs = plan_kwargs(plan)
    if use_peft is None:
        use_peft = _installed_peft() not in (None, json.loads(SNAPSHOT.read_text())["peft_version"])
    data = _with_peft(kwargs) if use_peft else _without_peft(kwargs)
    data.pop("runtime_config", None)
    data["inference_mode"] = True
    heads = TASK_HEADS.get(str(_plain(data.get("task_type"))))
    if heads:
        data["modules_to_save"] = [*(data.get("modules_to_save") or []), *heads]
    if data.get("task_type") is None:
        data["auto_mapping"] = auto_mapping(plan.model_class, model_type)
    return _plain(data)


def to_json(data: dict[str, Any]) -> str:
    """Serialised as PEFT's PeftConfig.save_pretrained does (indent 2, sorted keys)."""
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False)  # the config holds finite numbers only


def write_adapter_config(plan: Plan, directory: str | Path, **kwargs: Any) -> Path:
    """Write `directory/adapter_config.json` for `plan`; returns its path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CONFIG_NAME
    path.write_text(to_json(adapter_config(plan, **kwargs)))
    return path


def snapshot_peft_defaults(path: str | Path = SNAPSHOT) -> None:
    """Regenerate peft_lora_defaults.json from the installed PEFT (run after a PEFT upgrade)."""
    import warnings

    import peft
    from peft import LoraConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snap = {
            "_comment": "LoraConfig defaults of this PEFT version; regenerate with "
            "loraplan.runtime.export.snapshot_peft_defaults()",
            "peft_version": peft.__version__,
            "lora_config": _plain(LoraConfig().to_dict()),
            "eva_config": _plain(LoraConfig(init_lora_weights="eva").to_dict()["eva_config"]),
            "corda_config": _plain(LoraConfig(init_lora_weights="corda").to_dict()["corda_config"]),
        }
    Path(path).write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")

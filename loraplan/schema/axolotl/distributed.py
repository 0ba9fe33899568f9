"""Axolotl's `fsdp`, `fsdp_config`, `fsdp_version`, `deepspeed`, `world_size` -> native `distributed:`.

What Axolotl does with them (src/axolotl/utils/trainer.py `prepare_optim_env` / `setup_fsdp_envs`,
core/builders/base.py, utils/schemas/fsdp.py, schemas/validation.py):
- FSDP when `fsdp` or `fsdp_config` is set; `fsdp_config` keys may carry the `fsdp_` prefix
  (`fsdp_offload_params` = `offload_params`); the version is `fsdp_version`, else
  `fsdp_config.fsdp_version`, else 1 (`_resolve_fsdp_version`). `offload_params` (or `offload`
  in the `fsdp` list, passed to the Trainer) offloads; `reshard_after_forward`, or
  `shard_grad_op` in the list, sets the resharding; `dp_shard_size` is accelerate's.
- `deepspeed`: a JSON file (or an inline mapping) whose `zero_optimization` gives the stage
  and offload devices. The path is resolved relative to the YAML file. When it is not there and
  its name is one of Axolotl's bundled `deepspeed_configs/` files, their contents (read from
  axolotl-ai-cloud/axolotl 067b021, 2026-07-24) are used, and said.
- `deepspeed` and `fsdp` together: Axolotl refuses (`check_fsdp_deepspeed`).
- The world size comes from the launcher, not the config: Axolotl sets `cfg.world_size` from
  WORLD_SIZE (utils/config/__init__.py `normalize_config`), over anything written. loraplan reads a
  written `world_size` as the planned number of ranks, else `dp_shard_size` x `dp_replicate_size`
  (accelerate's ParallelismConfig), else assumes 8 (one 8-GPU node), with an LP359 finding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loraplan.schema.axolotl.tree import Tree
from loraplan.schema.axolotl.values import lax_bool, lax_int

ASSUMED_WORLD_SIZE = 8
# Axolotl's deepspeed_configs/*.json: zero_optimization stage, offload_optimizer / offload_param device
BUNDLED_DEEPSPEED = {
    "zero1.json": (1, "none", "none"),
    "zero1_torch_compile.json": (1, "none", "none"),
    "zero2.json": (2, "cpu", "none"),
    "zero2_torch_compile.json": (2, "cpu", "none"),
    "zero3.json": (3, "none", "none"),
    "zero3_bf16.json": (3, "none", "none"),
    "zero3_bf16_cpuoffload_all.json": (3, "cpu", "cpu"),
    "zero3_bf16_cpuoffload_params.json": (3, "none", "cpu"),
}


def translate_distributed(t: Tree) -> None:
    fsdp, fsdp_config, ds = t.raw("fsdp"), t.raw("fsdp_config"), t.raw("deepspeed")
    if not (fsdp or fsdp_config or ds):
        return
    if fsdp and ds:
        t.report("LP350", "error", "deepspeed and fsdp cannot be used together (Axolotl refuses the config)",
                 ("deepspeed",), hint="keep one of them")
        return
    src = ("fsdp_config",) if fsdp_config else ("fsdp",) if fsdp else ("deepspeed",)
    if fsdp or fsdp_config:
        _fsdp(t, fsdp, fsdp_config if isinstance(fsdp_config, dict) else {})
    elif not _deepspeed(t, ds):
        return
    _world_size(t, src)


def _world_size(t: Tree, src: tuple) -> None:
    n = lax_int(t.raw("world_size"))
    if isinstance(n, int) and not isinstance(n, bool):
        t.put(("distributed", "world_size"), n, ("world_size",), "world_size")
        return
    shard, replicate = lax_int(t.raw("dp_shard_size")), lax_int(t.raw("dp_replicate_size", 1))
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (shard, replicate)):
        # accelerate's ParallelismConfig: dp_replicate_size x dp_shard_size ranks (no TP / CP here)
        t.put(("distributed", "world_size"), shard * replicate, ("dp_shard_size",), "dp_shard_size",
              register_key=False)
        return
    t.put(("distributed", "world_size"), ASSUMED_WORLD_SIZE, src, src[0], register_key=False)
    t.report("LP359", "info",
             f"the number of ranks comes from the launcher, not the config: the per-rank memory estimate assumes "
             f"{ASSUMED_WORLD_SIZE} (one 8-GPU node)", src,
             hint="add `world_size: N` to plan for N ranks")


def _fsdp_get(config: dict, key: str) -> Any:
    """A fsdp_config value under its name or with Axolotl's accepted `fsdp_` prefix."""
    return config.get(key, config.get(f"fsdp_{key}"))


def _fsdp_path(config: dict, key: str) -> tuple:
    return ("fsdp_config", key if key in config else f"fsdp_{key}")


def _fsdp(t: Tree, fsdp: Any, config: dict) -> None:
    words = fsdp.split() if isinstance(fsdp, str) else [str(w) for w in fsdp] if isinstance(fsdp, list) else []
    if t.given("fsdp_version"):
        t.put(("distributed", "fsdp", "version"), lax_int(t.raw("fsdp_version")), ("fsdp_version",), "fsdp_version")
    elif _fsdp_get(config, "version") is not None:
        t.put(("distributed", "fsdp", "version"), lax_int(_fsdp_get(config, "version")),
              _fsdp_path(config, "version"), "fsdp_config.fsdp_version")
    else:  # Axolotl's default (validation.py _resolve_fsdp_version); FSDP1
        t.data.setdefault("distributed", {}).setdefault("fsdp", {})["version"] = 1
    offload = _fsdp_get(config, "offload_params")
    if offload is not None:
        t.put(("distributed", "fsdp", "offload_params"), lax_bool(offload), _fsdp_path(config, "offload_params"),
              "fsdp_config.offload_params")
    elif "offload" in words:
        t.put(("distributed", "fsdp", "offload_params"), True, ("fsdp",), "fsdp")
    reshard = _fsdp_get(config, "reshard_after_forward")
    if reshard is not None:
        t.put(("distributed", "fsdp", "reshard_after_forward"), lax_bool(reshard),
              _fsdp_path(config, "reshard_after_forward"), "fsdp_config.reshard_after_forward")
    elif "shard_grad_op" in words or str(_fsdp_get(config, "sharding_strategy")).upper() == "SHARD_GRAD_OP":
        t.put(("distributed", "fsdp", "reshard_after_forward"), False, ("fsdp",), "fsdp")
    if t.given("dp_shard_size"):
        t.put(("distributed", "fsdp", "dp_shard_size"), lax_int(t.raw("dp_shard_size")), ("dp_shard_size",),
              "dp_shard_size")
    if lax_bool(_fsdp_get(config, "activation_checkpointing")) is True and not t.given("gradient_checkpointing"):
        # FSDP's activation checkpointing recomputes each block in backward, as gradient checkpointing does
        t.put(("training", "gradient_checkpointing"), True, _fsdp_path(config, "activation_checkpointing"),
              "fsdp_config.activation_checkpointing")


def _deepspeed(t: Tree, value: Any) -> bool:
    """Put distributed.deepspeed from the inline mapping or the JSON file; False when unreadable."""
    if isinstance(value, dict):
        data, note = value, None
    elif isinstance(value, str):
        data, note = _read_json(t, value)
        if data is None:
            return False
    else:
        t.report("LP203", "error", "deepspeed should be the path of a DeepSpeed JSON config (or a mapping)",
                 ("deepspeed",), on_value=True)
        return False
    zero = data.get("zero_optimization") if isinstance(data.get("zero_optimization"), dict) else {}
    stage = zero.get("stage", 0)

    def device(key: str) -> Any:
        block = zero.get(key)
        return block.get("device", "none") if isinstance(block, dict) else "none"

    src = ("deepspeed",)
    t.put(("distributed", "deepspeed", "zero_stage"), stage, src, "deepspeed", register_key=False)
    t.put(("distributed", "deepspeed", "offload_optimizer_device"), device("offload_optimizer"), src, "deepspeed",
          register_key=False)
    t.put(("distributed", "deepspeed", "offload_param_device"), device("offload_param"), src, "deepspeed",
          register_key=False)
    if note:
        t.report("LP359", "info", note, src, on_value=True)
    return True


def _read_json(t: Tree, name: str) -> tuple[dict | None, str | None]:
    base = Path(t.src.file).parent if t.src.file and not t.src.file.startswith("<") else Path.cwd()
    path = Path(name) if Path(name).is_absolute() else base / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data, None
        problem = "is not a JSON object"
    except FileNotFoundError:
        bundled = BUNDLED_DEEPSPEED.get(Path(name).name)
        if bundled is not None:
            stage, opt, par = bundled
            return ({"zero_optimization": {"stage": stage, "offload_optimizer": {"device": opt},
                                           "offload_param": {"device": par}}},
                    f"{name} is not next to this file; read as Axolotl's bundled deepspeed_configs/"
                    f"{Path(name).name} (ZeRO-{stage}, optimizer offload {opt}, parameter offload {par})")
        problem = "was not found"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"cannot be read ({type(exc).__name__}: {exc})"
    t.report("LP359", "warning",
             f"the DeepSpeed config {path} {problem}: the memory estimate stays for one device, without ZeRO",
             ("deepspeed",), hint="the path is resolved relative to this YAML file", on_value=True)
    return None, None

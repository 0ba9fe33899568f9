"""Architecture from a live torch.nn.Module: any model, transformers or custom.

Walks `named_modules()` exactly as PEFT does (root excluded, shared modules once), classifies
each module by the types PEFT's LoRA dispatches on, and lists parameters as `named_parameters()`
does (a tied storage once, under its first name). Torch is only touched through the module given;
transformers is never imported here (its classes are recognised when already loaded).
"""

from __future__ import annotations

import re
import sys
from typing import Any

from loraplan.compiler.architecture import Architecture, ModuleInfo, ParamInfo

# peft/tuners/tuners_utils.py check_target_module_exists, layers_pattern unset: the lazy `.*?`
# takes the first numbered segment that follows at least two dotted segments and precedes a dot.
_PEFT_LAYER_INDEX = re.compile(r".*?\.[^.]*\.(?P<idx>\d+)\.")

_BNB_LINEAR = frozenset({"Linear4bit", "Linear8bitLt", "LinearFP4", "LinearNF4"})
_TEXT_HINTS = ("language_model", "text_model", "decoder", "transformer.h", "model.layers")
_NON_TEXT_HINTS = ("vision", "visual", "audio", "image", "encoder", "speech", "mm_", "projector")


def peft_layer_index(name: str) -> int | None:
    """The layer index PEFT's default extraction gives for a module (or parameter) name."""
    m = _PEFT_LAYER_INDEX.match(name)
    return int(m.group("idx")) if m else None


def _mro_names(module: Any) -> set[tuple[str, str]]:
    return {(c.__module__, c.__name__) for c in type(module).__mro__}


def _is_pretrained_model(module: Any) -> bool:
    mu = sys.modules.get("transformers.modeling_utils")
    return mu is not None and isinstance(module, mu.PreTrainedModel)


def classify(module: Any) -> str:
    """ModuleKind of one module, in the order PEFT's default LoRA dispatch tests types."""
    import torch.nn as nn

    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, nn.Conv2d):
        return "conv2d"
    if isinstance(module, nn.Conv3d):
        return "conv3d"
    if isinstance(module, nn.Conv1d):
        return "conv1d"
    if isinstance(module, nn.MultiheadAttention):
        return "mha"
    mro = _mro_names(module)
    if isinstance(module, nn.Linear) or any(n in _BNB_LINEAR for _, n in mro):
        return "linear"
    if ("transformers.pytorch_utils", "Conv1D") in mro:
        return "conv1d_gpt2"
    if any(p is not None for p in module._parameters.values()):
        return "other"
    return "container"


def _param_shape(param: Any, owner: Any) -> tuple[int, ...]:
    """Logical shape: bitsandbytes 4-bit weights are stored packed, report the unpacked one."""
    if type(param).__name__ == "Params4bit":
        qs = getattr(param, "quant_state", None)
        if qs is not None and getattr(qs, "shape", None) is not None:
            return tuple(int(s) for s in qs.shape)
        if hasattr(owner, "out_features") and hasattr(owner, "in_features"):
            return (int(owner.out_features), int(owner.in_features))
    return tuple(int(s) for s in param.shape)


def _tuple(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def _describe(module: Any, kind: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """in/out features, bias, weight shape and kind-specific extras of one module."""
    weight = shapes.get("weight")
    info: dict[str, Any] = {"in_features": None, "out_features": None, "bias": "bias" in shapes}
    extra: dict[str, Any] = {}
    if kind == "linear":
        info["in_features"] = int(module.in_features)
        info["out_features"] = int(module.out_features)
        cls = type(module).__name__
        if cls in ("Linear4bit", "LinearFP4", "LinearNF4"):
            extra["quantized"] = "4bit"
        elif cls == "Linear8bitLt":
            extra["quantized"] = "8bit"
    elif kind == "conv1d_gpt2" and weight is not None:
        info["in_features"], info["out_features"] = int(weight[0]), int(weight[1])
    elif kind == "embedding":
        info["in_features"] = int(module.num_embeddings)
        info["out_features"] = int(module.embedding_dim)
    elif kind in ("conv1d", "conv2d", "conv3d"):
        info["in_features"] = int(module.in_channels)
        info["out_features"] = int(module.out_channels)
        for attr in ("kernel_size", "stride", "padding", "dilation", "groups"):
            extra[attr] = _tuple(getattr(module, attr))
    elif kind == "mha":
        info["in_features"] = info["out_features"] = int(module.embed_dim)
        info["bias"] = "in_proj_bias" in shapes
        extra["num_heads"] = int(module.num_heads)
        extra["kdim"], extra["vdim"] = int(module.kdim), int(module.vdim)
        weight = shapes.get("in_proj_weight")
    if kind == "other" and isinstance(getattr(module, "is_transposed", None), bool):
        # fused MoE experts (transformers v5): PEFT reads this to orient the 3-D parameters' adapters
        extra["is_transposed"] = module.is_transposed
    info["weight_shape"] = weight
    info["extra"] = extra
    return info


def _find_stacks(named: list[tuple[str, Any]]) -> dict[str, int]:
    """Block lists: ModuleLists whose children are 0..n-1, not nested inside another such list."""
    stacks: dict[str, int] = {}
    for name, mod in named:
        if type(mod).__name__ != "ModuleList" and not any(c.__name__ == "ModuleList" for c in type(mod).__mro__):
            continue
        keys = list(mod._modules)
        if not keys or keys != [str(i) for i in range(len(keys))]:
            continue
        if any(name == s or name.startswith(s + ".") or s == "" for s in stacks):
            continue
        stacks[name] = len(keys)
    return stacks


def _main_stack(stacks: dict[str, int], stack_params: dict[str, int], expected: int | None) -> str | None:
    """The decoder block list: length equal to the config's layer count, text-like name, most params."""

    def score(prefix: str) -> tuple:
        low = prefix.lower()
        text = any(h in low for h in _TEXT_HINTS)
        non_text = any(h in low for h in _NON_TEXT_HINTS) and "language_model" not in low
        return (
            expected is not None and stacks[prefix] == expected,
            stack_params.get(prefix, 0) > 0,
            text and not non_text,
            not non_text,
            stack_params.get(prefix, 0),
        )

    if not stacks:
        return None
    return max(stacks, key=score)


_CONFIG_ATTRS: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size",),
    "intermediate_size": ("intermediate_size", "ffn_dim", "n_inner", "d_ff"),
    "num_attention_heads": ("num_attention_heads",),
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "multi_query_group_num"),
    "head_dim": ("head_dim",),
    "vocab_size": ("vocab_size",),
    "num_hidden_layers": ("num_hidden_layers",),
    "num_decoder_layers": ("num_decoder_layers",),  # T5-style encoder-decoders
    "num_experts": ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts"),
    "num_experts_per_tok": ("num_experts_per_tok", "moe_top_k", "num_experts_per_token"),
    "moe_intermediate_size": ("moe_intermediate_size", "expert_intermediate_size"),
    "n_shared_experts": ("n_shared_experts", "num_shared_experts"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions"),
    "tie_word_embeddings": ("tie_word_embeddings",),
}


def _safe_getattr(obj: Any, attr: str) -> Any:
    """getattr that survives config properties raising (e.g. per-layer attributes in Gemma 4)."""
    try:
        return getattr(obj, attr, None)
    except Exception:
        return None


def config_attrs(config: Any) -> dict[str, Any]:
    """Sizes the memory estimate needs, from the text (decoder) config of a transformers config."""
    if config is None:
        return {}
    text = config
    try:
        text = config.get_text_config(decoder=True) or config
    except Exception:  # older or custom configs: ambiguous or missing text config
        text = getattr(config, "text_config", None) or config
    out: dict[str, Any] = {}
    for key, names in _CONFIG_ATTRS.items():
        for cfg in (text, config):
            for attr in names:
                value = _safe_getattr(cfg, attr)
                if isinstance(value, (bool, int, float, str)):
                    out[key] = value
                    break
            if key in out:
                break
    if "head_dim" not in out and out.get("hidden_size") and out.get("num_attention_heads"):
        out["head_dim"] = out["hidden_size"] // out["num_attention_heads"]
    dtype = _safe_getattr(config, "dtype")
    if dtype is not None:
        out["dtype"] = str(dtype).replace("torch.", "")
    model_type = getattr(text, "model_type", None)
    if isinstance(model_type, str) and model_type:
        out["text_model_type"] = model_type
    return out


def _embedding_names(module: Any, named: list[tuple[str, Any]]) -> tuple[str | None, str | None]:
    """(output, input) embedding names: PEFT's all-linear excludes the output one on transformers models."""
    by_id = {}
    for name, mod in named:
        by_id.setdefault(id(mod), name)
    output = input_ = None
    if _is_pretrained_model(module):
        try:
            emb = module.get_output_embeddings()
            output = by_id.get(id(emb)) if emb is not None else None
        except Exception:
            output = None
        try:
            emb = module.get_input_embeddings()
            input_ = by_id.get(id(emb)) if emb is not None else None
        except Exception:
            input_ = None
    if input_ is None:
        import torch.nn as nn

        input_ = next((n for n, m in named if n and isinstance(m, nn.Embedding)), None)
    return output, input_


def from_module(
    module: Any,
    name: str | None = None,
    model_type: str | None = None,
    model_class: str | None = None,
    *,
    config: Any = None,
    source: str = "module",
    transformers_version: str | None = None,
) -> Architecture:
    """Describe `module` as an Architecture (no tensor is read: works on the meta device)."""
    config = config if config is not None else getattr(module, "config", None)
    named = list(module.named_modules())
    modules: list[ModuleInfo] = []
    params: list[ParamInfo] = []
    first_name: dict[int, str] = {}
    tied: dict[str, str] = {}
    stack_params: dict[str, int] = {}
    stacks = _find_stacks(named)
    for mname, mod in named:
        shapes: dict[str, tuple[int, ...]] = {}
        own = 0
        for pname, p in mod._parameters.items():
            if p is None:
                continue
            full = f"{mname}.{pname}" if mname else pname
            shape = _param_shape(p, mod)
            shapes[pname] = shape
            n = 1
            for s in shape:
                n *= s
            own += n
            if id(p) in first_name:
                tied[full] = first_name[id(p)]
                continue
            first_name[id(p)] = full
            params.append(ParamInfo(full, mname, shape, peft_layer_index(full)))
        if not mname:
            continue
        for prefix in stacks:
            if mname.startswith(prefix + ".") or prefix == "":
                stack_params[prefix] = stack_params.get(prefix, 0) + own
                break
        kind = classify(mod)
        info = _describe(mod, kind, shapes)
        modules.append(
            ModuleInfo(
                name=mname,
                cls=type(mod).__name__,
                kind=kind,
                in_features=info["in_features"],
                out_features=info["out_features"],
                bias=info["bias"],
                params=own,
                layer=peft_layer_index(mname),
                weight_shape=info["weight_shape"],
                extra=info["extra"],
            )
        )
    output, input_ = _embedding_names(module, named)
    attrs = config_attrs(config)
    if _is_pretrained_model(module):
        # What transformers' quantizers keep unquantised / in fp32 besides the tied and output keys.
        for attr in ("_keep_in_fp32_modules", "_keep_in_fp32_modules_strict"):
            value = getattr(module, attr, None)
            if value:
                attrs[attr.lstrip("_")] = sorted(value)
    expected = attrs.get("num_decoder_layers") or attrs.get("num_hidden_layers")
    main = _main_stack(stacks, stack_params, expected if isinstance(expected, int) else None)
    if config is not None:
        model_type = model_type or getattr(config, "model_type", None)
    return Architecture(
        name=name or getattr(config, "_name_or_path", None) or type(module).__name__,
        model_type=model_type or "custom",
        model_class=model_class or type(module).__name__,
        modules=modules,
        parameters=params,
        output_embedding=output,
        input_embedding=input_,
        tied_embeddings=_embeddings_tied(modules, tied),
        num_layers=stacks.get(main, 0) if main is not None else 0,
        main_stack=main,
        layer_stacks=stacks,
        tied_parameters=tied,
        source=source,
        transformers_version=transformers_version,
        config_attrs=attrs,
    )


def _embeddings_tied(modules: list[ModuleInfo], tied: dict[str, str]) -> bool:
    """True when an Embedding's weight is shared with another module (usually the LM head)."""
    embeddings = {m.name + ".weight" for m in modules if m.kind == "embedding"}
    return any(src in embeddings or dup in embeddings for dup, src in tied.items())

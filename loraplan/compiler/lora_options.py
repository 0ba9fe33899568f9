"""What PEFT's init modes and LoRA variants do to each matched module: refusals and exact shapes.

Read from peft/tuners/lora/layer.py and variants.py (the pinned version) and checked by
tests/compiler/test_peft_differential_options.py against `get_peft_model` on real (CPU) weights:
- `update_layer` of lora.Linear (GPT-2 Conv1D included), MultiheadAttention and ParamWrapper runs
  the weight-reading inits (PiSSA, OLoRA, orthogonal, CorDA, LoftQ, LoRA-GA) on `base_layer.weight`:
  a ParamWrapper (fused experts) or a MultiheadAttention has none (AttributeError); CorDA raises
  without `preprocess_corda`. ConvNd knows only true/false/gaussian/lora_ga/loftq (others: "Unknown
  initialization"), and its and Embedding's `loftq_init` call misses an argument (TypeError);
  Embedding silently uses the default init for PiSSA, OLoRA, orthogonal, CorDA, EVA and LoRA-GA.
- PiSSA / OLoRA keep min(r, in, out) singular / QR directions: A and B shrink on a narrower layer.
- Variants (`lora_variants`): lora.Linear takes exactly one of DoRA, Arrow, BD-LoRA, aLoRA, VeLoRA,
  MonteCLoRA, MiCA, KaSA; Embedding DoRA or MiCA; ConvNd DoRA; MultiheadAttention and ParamWrapper
  none. bitsandbytes layers take DoRA, aLoRA and Arrow, refuse VeLoRA and ignore the others.
- Extra parameters: KaSA a diagonal of r; MonteCLoRA r + num_samples priors; BD-LoRA's
  block-diagonal factor holds 1/nblocks of the dense one (and a block-diagonal B has no bias).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loraplan.compiler.counting import AdapterShape, module_adapter, module_features

LINEAR = ("linear", "conv1d_gpt2")
CONV = ("conv1d", "conv2d", "conv3d")
WEIGHT_INITS = ("pissa", "olora", "orthogonal", "corda", "loftq", "lora_ga")
EMBEDDING_DEFAULTED = ("pissa", "olora", "orthogonal", "corda", "eva", "lora_ga")
SUPPORTED_VARIANTS = {
    "linear": {"use_dora", "arrow_config", "use_bdlora", "alora_invocation_tokens", "velora_config",
               "monteclora_config", "mica", "kasa_config"},
    "embedding": {"use_dora", "mica"},
    "conv1d": {"use_dora"}, "conv2d": {"use_dora"}, "conv3d": {"use_dora"},
    "quantized": {"use_dora", "alora_invocation_tokens", "arrow_config"},
}
QUANT_REFUSED = {"velora_config"}  # bitsandbytes layers raise for it; other unknown variants are ignored


@dataclass
class Finding:
    code: str
    severity: str
    message: str
    option: str  # the lora key to point at
    names: list[str] = field(default_factory=list)
    hint: str | None = None


def init_mode(init: Any) -> str | None:
    """PEFT's init family: 'pissa' for pissa_niter_<n>, None for true/false."""
    if not isinstance(init, str):
        return None
    return "pissa" if init.startswith("pissa") else init


def variants(lora: Any) -> set[str]:
    out = {f for f in ("use_dora", "arrow_config", "use_bdlora", "alora_invocation_tokens", "velora_config",
                       "monteclora_config", "kasa_config") if getattr(lora, f, None)}
    if lora.init_lora_weights == "mica":
        out.add("mica")
    return out


def _kind(m: Any, quantized: set[str]) -> str:
    if m.name in quantized:
        return "quantized"
    return "linear" if m.kind in LINEAR else m.kind


def module_findings(m: Any, r: int, lora: Any, quantized: set[str], rank_key: str | None = None) -> list[Finding]:
    """What PEFT raises (or silently does) when it wraps module `m` with rank `r`."""
    out: list[Finding] = []
    kind = _kind(m, quantized)
    init = init_mode(lora.init_lora_weights)
    i, o = module_features(m)
    if init == "orthogonal" and r % 2 and rank_key is not None and m.kind in (*LINEAR, "mha"):
        out.append(Finding("LP316", "error", f"orthogonal init needs an even rank; rank_pattern '{rank_key}' gives "
                           f"{r} (PEFT refuses)", "rank_pattern", [m.name]))
    if init in WEIGHT_INITS and m.kind == "mha":
        out.append(Finding("LP560", "error", f"init_lora_weights '{lora.init_lora_weights}' reads the layer's "
                           "weight, and PEFT's MultiheadAttention adapter has none (AttributeError)",
                           "init_lora_weights", [m.name]))
    elif init == "loftq" and m.kind in ("embedding", *CONV):
        out.append(Finding("LP560", "error", f"LoftQ init on {m.cls}: PEFT's loftq_init call for this layer type "
                           "misses its config argument (TypeError)", "init_lora_weights", [m.name]))
    elif init not in (None, "gaussian", "lora_ga", "loftq") and m.kind in CONV:
        out.append(Finding("LP560", "error", f"init_lora_weights '{lora.init_lora_weights}' is not implemented "
                           f"for {m.cls} (PEFT: 'Unknown initialization')", "init_lora_weights", [m.name]))
    elif init == "olora" and m.kind == "conv1d_gpt2":
        out.append(Finding("LP570", "error", "OLoRA on GPT-2 Conv1D: PEFT factors the stored (in, out) weight "
                           "without transposing it, so A and B get the wrong shapes (in != out: the first forward "
                           "fails, and with DoRA get_peft_model raises) or the wrong values (the output changes at "
                           "init)", "init_lora_weights", [m.name], hint="use pissa, which transposes Conv1D weights"))
    elif init in EMBEDDING_DEFAULTED and m.kind == "embedding":
        out.append(Finding("LP569", "warning", f"PEFT ignores init_lora_weights '{lora.init_lora_weights}' on "
                           "Embedding layers and uses the default init there", "init_lora_weights", [m.name]))
    if kind != "quantized" and kind in ("linear", "embedding"):
        low = min(i, o)
        if init == "mica" and r > low:
            out.append(Finding("LP562", "error", f"MiCA needs r <= min(in_features, out_features) = {low}, "
                               f"r is {r} (PEFT refuses)", "r", [m.name]))
        if "kasa_config" in variants(lora) and m.kind == "linear" and r >= low:
            out.append(Finding("LP562", "error", f"KaSA needs r < min(in_features, out_features) = {low}, r is {r} "
                               "(PEFT refuses: at least one singular direction must stay)", "r", [m.name]))
    want = variants(lora)
    if kind == "quantized":
        for v in sorted(want & QUANT_REFUSED):
            out.append(Finding("LP561", "error", f"{v} is not supported on bitsandbytes layers (PEFT raises)", v,
                               [m.name]))
        for v in sorted(want - SUPPORTED_VARIANTS["quantized"] - QUANT_REFUSED - {"mica"}):
            out.append(Finding("LP569", "warning", f"PEFT ignores {v} on bitsandbytes-quantized layers", v,
                               [m.name]))
    elif len(want) == 1 and not want <= SUPPORTED_VARIANTS.get(kind, set()) and not (
        want == {"use_dora"} or want == {"mica"}  # DoRA / MiCA refusals are reported elsewhere (targets.py)
    ):
        (v,) = want
        out.append(Finding("LP561", "error", f"{v} is not supported on {m.cls} (PEFT: 'Invalid or unsupported "
                           "variant combination')", v, [m.name]))
    if "kasa_config" in want and m.kind == "conv1d_gpt2":
        out.append(Finding("LP561", "error", "KaSA does not support fan_in_fan_out layers such as GPT-2 Conv1D "
                           "(PEFT refuses)", "kasa_config", [m.name]))
    if lora.use_bdlora is not None and kind == "linear":
        out.extend(_bdlora(m, r, lora.use_bdlora, i, o))
    return out


def _bdlora(m: Any, r: int, bd: Any, i: int, o: int) -> list[Finding]:
    a = any(p in m.name for p in bd.target_modules_bd_a or [])
    b = any(p in m.name for p in bd.target_modules_bd_b or [])
    if a and b:
        return [Finding("LP565", "error", "matches both target_modules_bd_a and target_modules_bd_b (PEFT refuses)",
                        "use_bdlora", [m.name])]
    if not (a or b):
        if bd.match_strict:
            return [Finding("LP565", "error", "matches neither target_modules_bd_a nor target_modules_bd_b while "
                            "match_strict is true (PEFT refuses)", "use_bdlora", [m.name],
                            hint="add it to one list, or set `match_strict: false`")]
        return []
    if m.kind == "conv1d_gpt2":
        return [Finding("LP561", "error", "BD-LoRA builds its block-diagonal factor from base_layer.in_features, "
                        "which GPT-2 Conv1D does not have (PEFT raises AttributeError)", "use_bdlora", [m.name])]
    dims = (i, r) if a else (r, o)
    if any(d % bd.nblocks for d in dims):
        which = "A (in_features, r)" if a else "B (r, out_features)"
        return [Finding("LP565", "error", f"block-diagonal {which} = {dims} is not divisible by nblocks="
                        f"{bd.nblocks} (PEFT refuses)", "use_bdlora", [m.name])]
    return []


def param_findings(name: str, lora: Any) -> list[Finding]:
    """ParamWrapper (target_parameters, fused experts) has no `.weight` for the weight-reading inits."""
    init = init_mode(lora.init_lora_weights)
    out = []
    if init in WEIGHT_INITS:
        out.append(Finding("LP560", "error", f"init_lora_weights '{lora.init_lora_weights}' reads a module weight, "
                           "and a targeted parameter's module (e.g. fused experts) has none: PEFT raises "
                           "AttributeError", "init_lora_weights", [name],
                           hint="use the default init for target_parameters (or target nn.Linear modules)"))
    for v in sorted(variants(lora) - {"use_dora", "mica"}):  # DoRA / MiCA: targets.py
        out.append(Finding("LP561", "error", f"{v} is not supported on parameter adapters (PEFT: 'does not work "
                           "with LoRA variants')", v, [name]))
    return out


def module_shape(m: Any, r: int, lora: Any, quantized: set[str]) -> AdapterShape:
    """Parameters PEFT creates for module `m` with rank `r`, variants and inits included."""
    kind = _kind(m, quantized)
    base = module_adapter(m, r, lora_bias=lora.lora_bias, use_dora=lora.use_dora,
                          mica=lora.init_lora_weights == "mica")
    if m.kind not in LINEAR:
        return base
    i, o = module_features(m)
    total = base.total
    frozen = base.total - base.trainable
    if shrunk(m, r, lora):
        total -= (r - min(i, o)) * (i + o)
    if kind != "linear":  # bitsandbytes layers ignore KaSA, MonteCLoRA and BD-LoRA
        return AdapterShape(i, o, total, total - frozen)
    want = variants(lora)
    if "kasa_config" in want:
        total += r
    if "monteclora_config" in want:
        total += r + lora.monteclora_config.num_samples
    bd = lora.use_bdlora
    if bd is not None and "use_bdlora" in want:
        a = any(p in m.name for p in bd.target_modules_bd_a or [])
        b = any(p in m.name for p in bd.target_modules_bd_b or [])
        if a and not b:
            total -= r * i - r * i // bd.nblocks
        elif b and not a:  # BlockDiagonalLinear has no bias: lora_bias's B bias is gone
            total -= o * r - o * r // bd.nblocks + (o if lora.lora_bias else 0)
    return AdapterShape(i, o, total, total - frozen)


def shrunk(m: Any, r: int, lora: Any) -> bool:
    """PiSSA / OLoRA keep fewer than r directions on this (Linear or GPT-2 Conv1D) layer."""
    i, o = module_features(m)
    return m.kind in LINEAR and init_mode(lora.init_lora_weights) in ("pissa", "olora") and r > min(i, o)


def quantized_names(config: Any, arch: Any) -> set[str]:
    """Modules bitsandbytes replaces (their LoRA layers are PEFT's bnb ones)."""
    from loraplan.compiler.counting import quantized_modules

    q = config.quantization
    if q is None or not (q.load_in_4bit or q.load_in_8bit):
        return set()
    return quantized_modules(arch, q.llm_int8_skip_modules)

"""Swap eligible PEFT LoRA layers to fused-forward subclasses, in place.

The swap changes only `__class__` (a subclass of PEFT's own layer class), so parameter names,
state-dict keys, `save_pretrained` output and isinstance checks stay PEFT's. Anything the fused
path does not cover at call time (adapters disabled or merged, several active adapters, mixed
batches, autocast, a dtype it does not expect) runs PEFT's forward unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from loraplan.compiler.memory import SHARED_INPUT_GROUPS
from loraplan.runtime.fast import nf4, torch_ops
from loraplan.runtime.fast.dropout import active_p, supported
from loraplan.runtime.fast.functions import FusedLoraLinear, LoraAddInto, MergedLoraLinear
from loraplan.runtime.fast.grouped import SharedInputGroup
from loraplan.runtime.fast.stacked import WeightStack, stack_blocker, worth_stacking

_SUBCLASSES: dict[type, type] = {}
MODES = ("auto", "merged", "activation")
KERNELS = ("torch", "triton")
FOUR_BIT = ("layer", "direct")
_TRITON: list = []  # [module or None], filled on first use


def triton_ops():
    """loraplan.runtime.fast.triton_ops, or None where Triton or CUDA is missing."""
    if not _TRITON:
        try:
            if not torch.cuda.is_available():
                raise ImportError("no CUDA")
            from loraplan.runtime.fast import triton_ops as module
        except Exception:  # ImportError, or a Triton that cannot find its compiler
            module = None
        _TRITON.append(module)
    return _TRITON[0]


def _ops(layer, x: torch.Tensor):
    """The rank-r kernels for this call: Triton on CUDA in eager mode when chosen, else torch."""
    if layer._loraplan_kernels == "torch" or not x.is_cuda or torch.compiler.is_compiling():
        return torch_ops
    return triton_ops() or torch_ops


def _dequantize_4bit(weight: torch.Tensor, again: bool = False) -> torch.Tensor:
    """The bf16/fp16 weight of a bitsandbytes 4-bit parameter.

    again=True (the backward's recompute) reads the packed bytes through a flat view: the same
    values, but not the same call, so a compiled graph does not keep the forward's dequantised
    weight alive until backward (functions._merge).
    """
    import bitsandbytes.functional as bnbf

    state = weight.quant_state
    if getattr(state, "packing_format_for_cpu", False):
        packed, state = _from_cpu_packing(weight, state)
        return bnbf.dequantize_4bit(packed, state)
    return bnbf.dequantize_4bit(weight.view(-1) if again else weight, state)


def _from_cpu_packing(weight: torch.Tensor, state):
    """bitsandbytes' standard 4-bit layout of a weight its CPU inference kernels have repacked.

    On a CPU with AVX512-BF16, Linear4bit's first eval/no-grad forward rewrites the weight in place
    into a tiled layout (32-row blocks, absmax transposed to bf16) that `dequantize_4bit` cannot
    read. This undoes the tiling on copies, leaving the module's state untouched; absmax keeps the
    bf16 rounding that bitsandbytes' own kernels use from then on.
    """
    import copy

    n, k = state.shape
    tiles = weight.data.view(torch.uint8).reshape(-1, 32)  # each row: 32 low nibbles, 32 high nibbles
    codes = torch.cat([tiles & 0xF, (tiles >> 4) & 0xF], dim=-1)  # [-1, 64]: 32 rows x 2 codes
    codes = codes.reshape(n // 32, k // 2, 32, 2).transpose(1, 2).reshape(-1)  # row-major [n, k] codes
    packed = ((codes[0::2] << 4) | codes[1::2]).to(torch.uint8).reshape(state.original_qshape)
    standard = copy.copy(state)
    standard.absmax = state.absmax.T.reshape(-1).float()
    standard.dtype = state.original_dtype
    standard.nested = False
    standard.packing_format_for_cpu = False
    return packed, standard


@dataclass
class FastPathReport:
    fast: list[str] = field(default_factory=list)
    fallback: dict[str, str] = field(default_factory=dict)  # module name -> reason
    compute_dtype: list[str] = field(default_factory=list)  # fallback layers whose adapters were cast


def compute_dtype_adapters(layer: nn.Module) -> bool:
    """Cast a fallback layer's adapters (and DoRA magnitudes) to the base's 16-bit compute dtype.

    PEFT's layer computes in the adapters' dtype: with float32 adapters (its default) on a bf16
    model it casts every input to float32 and keeps that copy for backward, which made DoRA 3.1x
    the frozen step against 2.2x with bf16 adapters (issue 12). The fused path keeps float32
    masters because it computes in bf16 anyway; a layer it cannot run gets the adapters PEFT
    runs fastest, as `autocast_adapter_dtype=False` gives them. True when something was cast.
    """
    base = layer.get_base_layer()
    dtype = getattr(base, "compute_dtype", None) if _base_kind(layer) == "4bit" else getattr(base, "weight", None)
    dtype = getattr(dtype, "dtype", dtype)
    if dtype not in (torch.bfloat16, torch.float16):
        return False
    cast = False
    for attr in ("lora_A", "lora_B", "lora_magnitude_vector", "lora_embedding_A", "lora_embedding_B"):
        container = getattr(layer, attr, None)
        if container is None:
            continue
        for p in container.parameters() if isinstance(container, nn.Module) else ():
            if p.is_floating_point() and p.dtype != dtype:
                p.data = p.data.to(dtype)
                cast = True
    return cast


def _base_kind(layer: nn.Module) -> str | None:
    base = layer.get_base_layer()
    if type(base) is nn.Linear:
        return "linear"
    if type(base).__name__ == "Linear4bit":
        return "4bit"
    return None


def fallback_reason(layer: nn.Module) -> str | None:
    """Why this PEFT LoRA layer cannot take the fused path (None: it can)."""
    if not hasattr(layer, "lora_A") or not hasattr(layer, "get_base_layer"):
        return "not a PEFT LoRA layer"
    if _base_kind(layer) is None:
        return f"base layer {type(layer.get_base_layer()).__name__} is not nn.Linear or bnb Linear4bit"
    if len(layer.lora_A) != 1:
        return "several adapters on this layer"
    name = next(iter(layer.lora_A))
    if getattr(layer, "lora_variant", {}).get(name) is not None:
        return "LoRA variant (DoRA or other): PEFT's layer"
    if getattr(layer, "fan_in_fan_out", False):
        return "fan_in_fan_out: PEFT's layer"
    if layer.lora_B[name].bias is not None:
        return "lora_bias: PEFT's layer adds B's bias"
    dropout = layer.lora_dropout[name]
    if type(dropout) not in (nn.Dropout, nn.Identity):
        return f"lora_dropout is {type(dropout).__name__}, not nn.Dropout: PEFT's layer"
    return None


class _FastForward:
    """Mixin placed before PEFT's Linear / Linear4bit class."""

    def forward(self, x: torch.Tensor, *args, **kwargs):  # type: ignore[override]
        if (
            args
            or kwargs
            or self.disable_adapters
            or self.merged
            or len(self.active_adapters) != 1
            or self.active_adapters[0] not in self.lora_A
            or torch.is_autocast_enabled()
        ):
            return super().forward(x, *args, **kwargs)
        name = self.active_adapters[0]
        lora_a = self.lora_A[name].weight
        lora_b = self.lora_B[name].weight
        scaling = self.scaling[name]
        base = self.get_base_layer()
        bias = base.bias
        if base.weight.requires_grad or (bias is not None and bias.requires_grad):
            return super().forward(x, *args, **kwargs)
        p = active_p(self.lora_dropout[name])
        if p > 0 and torch.compiler.is_compiling():
            return _compiled_dropout(self, x, base, lora_a, lora_b, scaling, p)
        if p > 0 and not supported(x.device):
            return super().forward(x, *args, **kwargs)
        mode = self._loraplan_mode
        merged = p == 0 and (mode == "merged" or (mode == "auto" and torch.compiler.is_compiling()))
        if type(base) is nn.Linear:
            if x.dtype != base.weight.dtype:
                return super().forward(x, *args, **kwargs)
            if merged and torch.compiler.is_compiling():  # torch ops; the merge is loraplan::merge_lowrank
                return MergedLoraLinear.apply(x, base.weight, bias, lora_a, lora_b, scaling)
            ops = _ops(self, x)
            if merged:
                return MergedLoraLinear.apply(x, base.weight, bias, lora_a, lora_b, scaling, None, ops)
            group = getattr(self, "_loraplan_group", None)
            if group is not None and group.enabled:
                out = group.take(self, x)
                if out is not None:
                    return out
                if group.enabled:
                    return group.compute(self, x, name, ops, _group_drops(group, name))
            return FusedLoraLinear.apply(x, base.weight, bias, lora_a, lora_b, scaling, ops, None, p)
        if x.dtype != base.compute_dtype:
            return super().forward(x, *args, **kwargs)
        ops = _ops(self, x)
        if merged:
            bias = None if bias is None else bias.to(x.dtype)
            return MergedLoraLinear.apply(x, base.weight, bias, lora_a, lora_b, scaling, _dequantize_4bit, ops)
        if getattr(self, "_loraplan_4bit", "direct") == "direct" and x.is_cuda:  # one function (nf4.py)
            bias = None if bias is None else _as_dtype(bias, x.dtype)
            return FusedLoraLinear.apply(x, base.weight, bias, lora_a, lora_b, scaling, ops, None, p, nf4.dequantize)
        # bitsandbytes' own layer, the low-rank term added into its output. Dequantising here
        # instead, through bitsandbytes.functional, took 187 ms a step against 144 ms (H200,
        # docs/benchmarks.md): its Python per call costs more than the layer's own.
        out = base(x)
        if out._is_view() or not out.is_contiguous():
            out = out.clone()
        return LoraAddInto.apply(out, x, lora_a, lora_b, scaling, ops, None, p)


def _as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t if t.dtype == dtype else t.to(dtype)


def _group_drops(group, name: str):
    """Each member's dropout probability, or None when no member drops."""
    ps = tuple(active_p(m.lora_dropout[name]) for m in group.members)
    return ps if any(ps) else None


def _compiled_dropout(layer, x, base, lora_a, lora_b, scaling, p):
    """Under torch.compile: plain ops in the compute dtype, so inductor fuses the dropout.

    The merged formulation does not apply (the low-rank term reads the dropped input), and
    torch.Generator calls do not trace; inductor draws and recomputes its own mask.
    """
    dt = x.dtype
    low = F.linear(F.linear(F.dropout(x, p, training=True), lora_a.to(dt)), lora_b.to(dt)) * scaling
    if type(base) is nn.Linear:
        return F.linear(x, base.weight, base.bias) + low
    return base(x) + low


def _fast_class(cls: type) -> type:
    if cls not in _SUBCLASSES:
        _SUBCLASSES[cls] = type(f"Fast{cls.__name__}", (_FastForward, cls), {"_loraplan_original": cls})
    return _SUBCLASSES[cls]


def patch_model(
    model: nn.Module, mode: str = "auto", kernels: str = "torch", stack: bool = False, compute_dtype: bool = True,
    four_bit: str = "direct",
) -> FastPathReport:
    """Put every eligible PEFT LoRA layer of `model` on the fused path; report the rest.

    mode "activation" adds s (x A^T) B^T to the output; "merged" folds s B A into the
    (dequantised) weight for one GEMM per pass; both save only x and x A^T. "auto" (default)
    takes "activation" in eager mode and "merged" under torch.compile, the faster of the two in
    each on an H200 (docs/benchmarks.md): in eager, two weight updates per layer and step add
    host work to a step that is already close to host-bound; compiled, the update is one Triton
    kernel (`loraplan::merge_lowrank`) and the GEMMs need no low-rank terms.

    kernels: "torch" (default) runs the rank-r products with cuBLAS; "triton" with loraplan's
    Triton kernels (CUDA, eager mode; slower end to end on an H200, see docs/benchmarks.md).

    stack (opt-in): in the activation formulation, siblings whose outputs are at least 4x their
    input wide (gate/up) keep their frozen weights and B's in one tensor, so one GEMM per
    projection does the base and the low-rank term (stacked.py). Each base layer's `weight` is
    then a view of that tensor; `unpatch_model` makes it its own again. Not the default: on two
    H200s it was 0.1-0.3 ms faster per step of the 1.1B benchmark, within the noise.

    four_bit: how eager 4-bit layers on CUDA run: "direct" (default) runs one fused function per
    layer that calls bitsandbytes' dequantisation kernels itself (nf4.py), with less Python per
    call; "layer" calls bitsandbytes' Linear4bit and adds the low-rank term into its output. In
    one process on an H100 (QLoRA nf4, dropout 0.05, checkpointing) "direct" took 309.8 ms against
    376.4 (Llama 1.1B) and 496.8 against 550.5 (Qwen2.5-0.5B), host-bound steps with spreads of
    94-189 ms (docs/benchmarks.md).

    compute_dtype (default True): layers that keep PEFT's forward (DoRA, lora_bias, ...) get
    their adapters in the base's 16-bit compute dtype (`compute_dtype_adapters`); False leaves them.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, not {kernels!r}")
    if four_bit not in FOUR_BIT:
        raise ValueError(f"four_bit must be one of {FOUR_BIT}, not {four_bit!r}")
    report = FastPathReport()
    for name, module in model.named_modules():
        if not hasattr(module, "lora_A") or not hasattr(module, "get_base_layer"):
            continue
        if isinstance(module, _FastForward):
            module._loraplan_mode, module._loraplan_kernels, module._loraplan_4bit = mode, kernels, four_bit
            report.fast.append(name)
            continue
        reason = fallback_reason(module)
        if reason is None:
            module.__class__ = _fast_class(type(module))
            module._loraplan_mode, module._loraplan_kernels, module._loraplan_4bit = mode, kernels, four_bit
            report.fast.append(name)
        else:
            report.fallback[name] = reason
            if compute_dtype and compute_dtype_adapters(module):
                report.compute_dtype.append(name)
    _group_siblings(model, stack=stack and mode != "merged" and kernels == "torch")
    from loraplan.runtime.engines import prepare_sharding  # FSDP / ZeRO-3: engines.py

    prepare_sharding(model, report)
    return report


def _group_siblings(model: nn.Module, stack: bool) -> None:
    """Tie fused nn.Linear siblings that read one input (q/k/v, gate/up) into a SharedInputGroup.

    With `stack`, every group (and every lone layer) whose weights may share one tensor, and for
    which that moves fewer bytes, gets a WeightStack (stacked.py).
    """
    _release_groups(model)
    for parent in model.modules():
        children = {n: c for n, c in parent.named_children() if isinstance(c, _FastForward)}
        linear = {n: c for n, c in children.items() if type(c.get_base_layer()) is nn.Linear}
        units = []
        for names in SHARED_INPUT_GROUPS:
            # in the parent's order (q, k, v; gate, up), which is the order the model calls them in
            # and so the order PEFT's dropout modules draw their masks in
            members = [c for n, c in linear.items() if n in names]
            if len(members) < 2 or len({m.get_base_layer().in_features for m in members}) != 1:
                continue
            if len({m.get_base_layer().weight.dtype for m in members}) != 1:
                continue
            units.append(members)
        grouped = {id(m) for members in units for m in members}
        units += [[c] for c in linear.values() if id(c) not in grouped]
        for members in units:
            group = _stacked_group(members) if stack else None
            if group is None and len(members) > 1:
                group = SharedInputGroup(members)
            for m in members if group is not None else ():
                m._loraplan_group = group


def _stacked_group(members: list) -> SharedInputGroup | None:
    """A group whose frozen weights and B's share one tensor, where that pays and is possible."""
    bases = [m.get_base_layer() for m in members]
    if not worth_stacking(bases[0].in_features, sum(b.out_features for b in bases)) or stack_blocker(bases):
        return None
    ranks = [m.lora_A[next(iter(m.lora_A))].weight.shape[0] for m in members]
    group = SharedInputGroup(members)
    group.stack = WeightStack(bases, ranks)
    return group


def _release_groups(model: nn.Module) -> None:
    """Undo _group_siblings: stacked weights become contiguous tensors of their own again."""
    for module in model.modules():
        group = module.__dict__.pop("_loraplan_group", None)
        if group is not None and group.stack is not None:
            group.stack.release()
            group.stack = None


def unpatch_model(model: nn.Module) -> int:
    """Give every patched layer back PEFT's own class; returns how many were restored."""
    _release_groups(model)
    count = 0
    for module in model.modules():
        if isinstance(module, _FastForward):
            module.__class__ = module._loraplan_original
            count += 1
    return count

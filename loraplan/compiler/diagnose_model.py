"""Findings about the model side: fused MoE experts and PEFT's v5 rewrite of old expert names,
targets serving stacks cannot load, and PEFT quirks that silently change the result."""

from __future__ import annotations

from collections.abc import Iterator

from loraplan.compiler import matching as mt
from loraplan.compiler.diagnose import Ctx, short_list
from loraplan.compiler.injections import user_entries
from loraplan.compiler.peft_tables import (
    MOE_TARGET_MODULE_MAPPING,
    TASK_MODULES_TO_SAVE_AFTER,
    TASK_MODULES_TO_SAVE_BEFORE,
)
from loraplan.schema.diagnostic import Diagnostic

EXPERT_NAMES = frozenset({"w1", "w2", "w3", "gate_proj", "up_proj", "down_proj", "experts"})


def _expert_suggestion(ctx: Ctx) -> str:
    tails = sorted({".".join(n.split(".")[-2:]) for n in ctx.fused_experts})
    return "target_parameters: [" + ", ".join(tails) + "]"


def moe(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP506: what PEFT's v5 conversion did, or expert names that miss fused experts."""
    conv, lora = ctx.res.moe, ctx.lora
    string = isinstance(lora.target_modules, str)
    if conv is not None and conv.refused:
        olds = [e for e in (lora.target_modules if isinstance(lora.target_modules, list) else [])
                if e.rsplit(".", 1)[-1] in EXPERT_NAMES]
        # One finding for the whole list (at its first entry), not one copy per entry.
        path = ctx.entry_path("target_modules", olds[0]) if olds else ctx.where("target_modules")[0]
        yield ctx.d("LP506", "error", conv.refused, path,
                    hint="target both halves of the fused pair (PEFT raises ValueError otherwise)")
        return
    if conv is not None and conv.moved:
        parts = []
        for new, olds in sorted(conv.moved.items()):
            first = next((p for p in ctx.params if p.module == new or p.module.endswith("." + new)), None)
            extra = ""
            if first is not None:
                doubled = first.rank_pattern in conv.fused_patterns
                extra = f" with r={first.r}, lora_alpha={mt_num(first.lora_alpha)}" + (
                    " (PEFT doubles both for the fused pair)" if doubled else "")
            parts.append(f"{', '.join(f'`{o}`' for o in olds)} -> `{new}`{extra}")
        dropped = _dropped_linears(ctx)
        msg = ("transformers v5 fuses this model's experts; PEFT rewrites the targets into target_parameters: "
               + "; ".join(parts))
        hint = None
        if dropped:
            msg += (f". The {len(dropped)} Linear module(s) with those names (dense MLP layers, shared experts) "
                    f"are therefore NOT adapted: {short_list(dropped)}")
            tails = sorted({".".join(n.split(".")[-2:]) + ".weight" for n in dropped})
            hint = ("PEFT rewrites every target ending in those names; to adapt these layers, name their weights "
                    "in target_parameters: [" + ", ".join(tails) + "]")
        olds_all = sorted({o for olds in conv.moved.values() for o in olds})
        paths = [ctx.where("target_modules")[0]] if string else [  # in the user's order: the first is shown
            ctx.entry_path("target_modules", o) for o in (lora.target_modules or []) if o in olds_all]
        yield ctx.d("LP506", "warning" if dropped else "info", msg, (paths or [("lora",)])[0], hint=hint)
        return
    if not ctx.fused_experts or any(p in ctx.adapted_params for p in ctx.fused_experts):
        return
    entries, is_regex, _ = user_entries(lora, ctx.res)
    missing = [e for e in entries if e.rsplit(".", 1)[-1] in EXPERT_NAMES
               or (is_regex and e.lower() == mt.INCLUDE_LINEAR_LAYERS_SHORTHAND)]
    if missing:  # one finding for all such entries, at the first
        shape = next(p.shape for p in ctx.arch.parameters if p.name == ctx.fused_experts[0])
        names = ", ".join(f"`{e}`" for e in missing)
        verb = "does" if len(missing) == 1 else "do"
        yield ctx.d("LP506", "warning", f"{names} {verb} not reach this model's routed experts: transformers v5 "
                    f"stores them as fused parameters ({short_list(ctx.fused_experts, 2)}, shape "
                    f"{'x'.join(map(str, shape))}), which target_modules cannot match",
                    ctx.entry_path("target_modules", missing[0]),
                    hint=f"add {_expert_suggestion(ctx)}" + _old_names(ctx))


def _old_names(ctx: Ctx) -> str:
    """For model types PEFT converts, the old names it would rewrite into the fused parameters."""
    if ctx.res.moe is None:
        return ""
    olds = [o for o in MOE_TARGET_MODULE_MAPPING[ctx.res.moe.family] if o != "gate"]
    return f", or write {', '.join(f'`{o}`' for o in olds)}: PEFT converts those for this model type"


def mt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _dropped_linears(ctx: Ctx) -> list[str]:
    conv = ctx.res.moe
    if conv is None:
        return []
    olds = {o.rsplit(".", 1)[-1] for olds in conv.moved.values() for o in olds}
    return [m.name for m in ctx.arch.modules if m.kind in ("linear", "conv1d_gpt2")
            and m.name.rsplit(".", 1)[-1] in olds and m.name not in ctx.adapted]


def _is_router(ctx: Ctx, module: str) -> bool:
    parent, _, leaf = module.rpartition(".")
    return leaf in ("gate", "router") and ctx.arch.module(f"{parent}.experts") is not None


def serving(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP507: adapters on lm_head, embeddings or MoE routers; full copies of them in modules_to_save."""
    found: dict[str, list[str]] = {}
    for i in ctx.modules:
        m = ctx.arch.module(i.module)
        if i.module == ctx.arch.output_embedding:
            found.setdefault("the output layer (lm_head)", []).append(i.module)
        elif m is not None and m.kind == "embedding":
            found.setdefault("embeddings", []).append(i.module)
        elif _is_router(ctx, i.module):
            found.setdefault("MoE routers", []).append(i.module)
    for p in ctx.params:
        if _is_router(ctx, p.module.rpartition(".")[0]):
            found.setdefault("MoE routers", []).append(p.module)
    for what, names in found.items():
        entries = sorted({e for n in names for i in ctx.modules + ctx.params if i.module == n for e in i.matched_by})
        path = ctx.entry_path("target_modules", entries[0]) if entries else ctx.where("target_modules")[0]
        tied = " (tied to the input embedding)" if ctx.arch.tied_embeddings and "output" in what else ""
        yield ctx.d("LP507", "warning", f"adapters on {what}{tied}: {short_list(names)}; many serving stacks "
                    "(e.g. vLLM) cannot load LoRA weights there", path,
                    hint="merge the adapter into the base weights before serving, or drop these targets")
    heavy = [n for n in ctx.res.modules_to_save
             if n == ctx.arch.output_embedding or ((m := ctx.arch.module(n)) is not None and m.kind == "embedding")]
    if heavy:
        path, key = ctx.where("modules_to_save")
        yield ctx.d("LP507", "warning", f"modules_to_save trains and saves full copies of {short_list(heavy)}; "
                    "many serving stacks (e.g. vLLM) cannot load such adapters", path, key=key)


def quirks(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP509: PEFT behaviour that changes the result without a word."""
    lora, res, spec = ctx.lora, ctx.res, ctx.res.spec
    if mt.uses_layer_filter(spec) and isinstance(spec.target_modules, set):
        for i in ctx.modules:
            if i.module in spec.target_modules and not mt.passes_layer_filter(spec, i.module):
                e = next((x for x in i.matched_by if x == i.module), i.module)
                yield ctx.d("LP509", "warning", f"`{i.module}` is a full module name, so PEFT adapts it regardless "
                            f"of layers_to_transform {lora.layers_to_transform}",
                            ctx.entry_path("target_modules", e), hint="write the short name to apply the filter")
    # all-linear is always condensed and selects the same modules: only say so when it matters,
    # that is when a layer filter now applies to every name, or the user wrote the 20+ names.
    filtered = mt.uses_layer_filter(spec)
    if res.condensed is not None and (filtered or res.all_linear is None):
        path, key = ctx.where("target_modules")
        count = len(res.all_linear or lora.target_modules or [])
        yield ctx.d("LP509", "warning" if filtered else "info", f"PEFT condenses the {count} "
                    f"target names into {len(res.condensed)} suffixes ({short_list(sorted(res.condensed), 6)}) "
                    "before matching; the modules selected are the same"
                    + ("" if not mt.uses_layer_filter(spec) else ", but now every one goes through "
                       "layers_to_transform"), path, key=key)
    for item in lora.modules_to_save or []:
        odd = [n for n in res.modules_to_save if n.endswith(item) and not (n == item or n.endswith("." + item))]
        if odd:
            yield ctx.d("LP509", "warning", f"modules_to_save `{item}` also wraps {short_list(odd)}: PEFT matches "
                        "modules_to_save as a plain string suffix", ctx.entry_path("modules_to_save", item),
                        hint="write the full module name")
    for r in res.refusals:
        if r.kind.startswith("mts_"):
            items = [m for m in lora.modules_to_save or [] if any(n.endswith(m) for n in r.names)]
            for path in [ctx.entry_path("modules_to_save", m) for m in items] or [ctx.where("modules_to_save")[0]]:
                yield ctx.d("LP515", "error", f"modules_to_save wraps {short_list(r.names)}, but {r.message}: PEFT "
                            "raises TypeError", path, hint="write the name of the module to train in full "
                            "exactly, and keep it out of target_modules")
    if mt.uses_layer_filter(spec) and ctx.arch.main_stack is not None:
        outside = [i.module for i in ctx.modules if mt.main_stack_index(ctx.arch, i.module) is None
                   and not (isinstance(spec.target_modules, set) and i.module in spec.target_modules)]
        if outside:
            path, key = ctx.where("layers_to_transform")
            yield ctx.d("LP509", "warning", f"layers_to_transform also selects modules outside the main stack "
                        f"`{ctx.arch.main_stack}` (PEFT reads the first number in each name): {short_list(outside)}",
                        path, hint=f"set `layers_pattern: {ctx.arch.main_stack.rsplit('.', 1)[-1]}`", key=key)
    task = lora.task_type or ""
    added = TASK_MODULES_TO_SAVE_BEFORE.get(task, []) + TASK_MODULES_TO_SAVE_AFTER.get(task, [])
    heads = [n for n in res.modules_to_save if any(n.endswith(h) for h in added)]
    if heads:
        yield ctx.d("LP509", "info", f"task_type {task}: PEFT trains {short_list(heads)} in full (it adds "
                    f"{', '.join(added)} to modules_to_save)", ("lora", "task_type"))


def fan_in_fan_out(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP513: PEFT flips fan_in_fan_out to fit the module type (and warns at runtime)."""
    for name, value in ctx.res.fan_in_fan_out_forced[:1]:
        if value:
            path, key = ctx.where("target_modules")
            yield ctx.d("LP513", "info", f"`{name}` is a GPT-2 Conv1D (weight stored in x out): PEFT sets "
                        "fan_in_fan_out to true for it", path, hint="write `fan_in_fan_out: true`", key=key)
        else:
            path, key = ctx.where("fan_in_fan_out")
            yield ctx.d("LP513", "warning", f"fan_in_fan_out is true but `{name}` is an nn.Linear: PEFT sets it "
                        "to false", path, hint="remove `fan_in_fan_out: true`", key=key)


CHECKS = (moe, serving, quirks, fan_in_fan_out)

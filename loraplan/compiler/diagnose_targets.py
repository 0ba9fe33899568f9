"""Findings about the user's target entries: nothing matched, wrong module types, partial coverage,
exclusions and rank/alpha patterns that do nothing, modules_to_save, PEFT's default targets."""

from __future__ import annotations

import copy
from collections.abc import Iterator

from loraplan.compiler import matching as mt
from loraplan.compiler.diagnose import (
    FUSED_GATE_UP,
    FUSED_QKV,
    Ctx,
    close_matches,
    did_you_mean,
    layer_ranges,
    layer_summary,
    short_list,
    suffix_candidates,
)
from loraplan.compiler.diagnose_model import EXPERT_NAMES
from loraplan.compiler.injections import user_entries
from loraplan.schema.diagnostic import Diagnostic


def _entries_naming(ctx: Ctx, names: list[str]) -> list[str]:
    entries, is_regex, _ = user_entries(ctx.lora, ctx.res)
    if ctx.lora.target_modules is None:
        return []
    return [e for e in entries if any(mt.entry_matches(e, n, is_regex=is_regex) for n in names)]


def refusals(ctx: Ctx) -> Iterator[Diagnostic]:
    """Errors PEFT raises (module types it cannot wrap, Mamba's refused names, invalid parameters)."""
    by_message: dict[tuple[str, str, str | None], list[str]] = {}
    for r in ctx.res.refusals:
        by_message.setdefault((r.kind, r.message, r.option), []).extend(r.names)
    for (kind, message, option), names in by_message.items():
        if kind in ("type", "unsupported", "mamba"):
            yield from _unsupported(ctx, kind, message, names)
        elif kind == "param_invalid":
            yield from _param_invalid(ctx, message, option, names)
        elif kind == "all_excluded":
            path, key = ctx.where("exclude_modules")
            yield ctx.d("LP502", "error", "every module the targets match is excluded (exclude_modules / "
                        "modules_to_save); PEFT refuses to create an empty adapter", path, key=key)
        elif kind == "no_match" and ctx.lora.target_modules is None and ctx.res.moe is None:
            yield ctx.d("LP510", "error", f"target_modules is not set and PEFT has no default targets for model "
                        f"type '{ctx.arch.model_type}': {message}", ("lora",),
                        hint="list the modules to adapt, e.g. `target_modules: all-linear`", key=True)


def _param_invalid(ctx: Ctx, message: str, option: str | None, names: list[str]) -> Iterator[Diagnostic]:
    entries = [t for t in ctx.lora.target_parameters or [] if any(mt.names_match([t], n) for n in names)]
    converted = ctx.res.moe is not None and bool(ctx.res.moe.moved) and not entries
    hint = None
    if converted:
        hint = ("these parameters come from PEFT's conversion of your target_modules for fused MoE experts "
                "(see LP506)" + (f"; set `{option}` off to adapt them" if option else ""))
    if option is not None:
        paths = [ctx.where(option)[0]]
    else:
        paths = [ctx.entry_path("target_parameters", e) for e in entries] or [ctx.where("target_parameters")[0]]
    for path in paths:
        yield ctx.d("LP505", "error", f"PEFT cannot adapt parameter {short_list(names)}: {message}", path,
                    hint=hint, key=option is not None)


def _unsupported(ctx: Ctx, kind: str, message: str, names: list[str]) -> Iterator[Diagnostic]:
    mods = [ctx.arch.module(n) for n in names]
    entries = _entries_naming(ctx, names)
    paths = [ctx.entry_path("target_modules", e) for e in entries] or [ctx.where("target_modules")[0]]
    if kind == "mamba":
        text = f"{message}: {short_list(names)}"
        hint = "remove it from target_modules (PEFT raises ValueError for it)"
    elif kind == "unsupported":
        text, hint = f"{message}: {short_list(names)}", None
    else:
        text = f"matches {len(names)} module(s) of type {message}, which LoRA cannot wrap: {short_list(names)}"
        holds_3d = any(p.module in names and len(p.shape) == 3 for p in ctx.arch.parameters)
        if holds_3d:
            hint = "these are fused MoE experts; adapt their weights with target_parameters, e.g. " + ", ".join(
                sorted({".".join(p.name.split(".")[-2:]) for p in ctx.arch.parameters
                        if p.module in names and len(p.shape) == 3}))
        elif any(m is not None and m.kind == "container" for m in mods):
            first = names[0]
            inner = [m.name[len(first) + 1:] for m in ctx.arch.modules
                     if m.name.startswith(first + ".") and mt.wrappable(m)]
            hint = "it is a container: name the layers inside it" + (
                f" ({short_list(inner, 4)} in `{first}`)" if inner else "")
        else:
            hint = "LoRA wraps Linear, GPT-2 Conv1D, Embedding, Conv1d/2d/3d and MultiheadAttention modules"
    for path in paths:
        yield ctx.d("LP505", "error", text, path, hint=hint)


def target_entries(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP502: an entry that adapts nothing is an error even when other entries match."""
    lora, res = ctx.lora, ctx.res
    if lora.target_modules is None:
        return
    entries, is_regex, _ = user_entries(lora, res)
    moved = {e for olds in (res.moe.moved.values() if res.moe else []) for e in olds}
    hits = {c.pattern: c.modules for c in ctx.coverage if c.source == "target_modules"}
    for e in entries:
        if hits.get(e, 0) or (e in moved and not is_regex):
            continue
        if is_regex and res.moe is not None and res.moe.resolved_from_string and ctx.params:
            continue
        named = [n for n in ctx.names if mt.entry_matches(e, n, is_regex=is_regex)]
        if is_regex and e.lower() == mt.INCLUDE_LINEAR_LAYERS_SHORTHAND:
            named = sorted(res.all_linear or [])
        path = ctx.entry_path("target_modules", e)
        if set(named) & set(res.unwrappable):
            continue  # LP505 says why
        if named:
            if any(n in res.modules_to_save or n in res.excluded for n in named):
                why = "exclude_modules / modules_to_save exclude them all"
            else:
                why = f"layers_to_transform {lora.layers_to_transform} keeps none of them"
            yield ctx.d("LP502", "error", f"`{e}` names {len(named)} module(s) but adapts none: {why}", path)
            continue
        what = "no module" if not is_regex else "no module name (re.fullmatch over the full name)"
        if is_regex and e.lower() == mt.INCLUDE_LINEAR_LAYERS_SHORTHAND:
            what = "no Linear or Conv1D module"
        hint = None
        if is_regex:
            plain = e.replace("_", "").isalnum()
            examples = [m.name for m in ctx.arch.modules if m.layer is not None and mt.wrappable(m)][:2]
            hint = (f"a string is a regular expression over the whole name: write a list `[{e}]` or `.*\\.{e}`"
                    if plain else f"module names look like {short_list(examples, 2)}")
        elif e.rsplit(".", 1)[-1] in EXPERT_NAMES and ctx.fused_experts:
            hint = "this model's experts are fused parameters: see LP506"
        else:
            close = did_you_mean(e, ctx.arch)
            fused = any(c in FUSED_QKV + FUSED_GATE_UP for c in close)
            if close:
                hint = ("this model fuses that projection: " if fused else "") + "did you mean " + " or ".join(
                    f"`{c}`" for c in close) + "?"
        yield ctx.d("LP502", "error", f"target `{e}` matches {what} in {ctx.arch.model_class}"
                    + (" (PEFT stays silent when other targets match)" if len(entries) > 1 else ""), path, hint)


def parameter_entries(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP514: a target_parameters entry that matches no parameter."""
    hits = {c.pattern: c.modules for c in ctx.coverage if c.source == "target_parameters"}
    pnames = [p.name for p in ctx.arch.parameters]
    for t in ctx.lora.target_parameters or []:
        if hits.get(t, 0):
            continue
        close = close_matches(t, suffix_candidates(pnames, 3))
        hint = ("did you mean " + " or ".join(f"`{c}`" for c in close) + "?") if close else None
        yield ctx.d("LP514", "error", f"target_parameters `{t}` matches no parameter of {ctx.arch.model_class} "
                    "(exact name or `.suffix` of `module.parameter`)", ctx.entry_path("target_parameters", t), hint)


TOWER_WORDS = ("vision", "visual", "audio", "image", "speech", "projector", "mm_")


def _block_leaves(ctx: Ctx, layer: int, exclude: set[str]) -> list[str]:
    """Leaf names of the wrappable modules in one main-stack block, minus `exclude` (already adapted)."""
    prefix = f"{ctx.arch.main_stack}.{layer}."
    leaves = [m.name.rsplit(".", 1)[-1] for m in ctx.arch.modules
              if m.name.startswith(prefix) and mt.wrappable(m) and m.name not in exclude]
    return list(dict.fromkeys(leaves))


def coverage(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP503 (entries that reach fewer blocks than the adapter as a whole, grouped by the blocks they
    reach) and LP504 (the adapter reaches only part of the decoder blocks), with numbers. Skipped
    under layers_to_transform, where partial coverage is the point."""
    total = ctx.arch.num_layers
    if not total or ctx.lora.layers_to_transform is not None:
        return
    union = sorted({i.layer for i in ctx.modules + ctx.params if i.layer is not None})
    outside = [i.module for i in ctx.modules + ctx.params if i.layer is None]
    towers = [n for n in outside if any(w in n.lower() for w in TOWER_WORDS)]
    if outside and (towers or not union):
        outside = towers or outside
        heads = list(dict.fromkeys(".".join(n.split(".")[:2]) for n in outside))
        path, key = ctx.where("target_modules")
        yield ctx.d("LP504", "info" if union else "warning",
                    f"{len(outside)} of {len(ctx.modules) + len(ctx.params)} adapted modules lie outside the main "
                    f"decoder stack `{ctx.arch.main_stack}` (in {short_list(heads, 4)})"
                    + ("" if union else f"; none of its {total} blocks is adapted"), path, key=key)
    if not union:
        return
    groups: dict[tuple[int, ...], list] = {}
    for c in ctx.coverage:
        if 0 < c.layers_covered < len(union):
            groups.setdefault(tuple(c.layers), []).append(c)
    for layers, covs in groups.items():
        missing = sorted(set(union) - set(layers))
        names = ", ".join(f"`{c.pattern}`" for c in covs)
        others = _block_leaves(ctx, missing[0], ctx.adapted)
        field = "target_parameters" if covs[0].source == "target_parameters" else "target_modules"
        yield ctx.d("LP503", "warning", f"{names} reach{'es' if len(covs) == 1 else ''} {len(layers)} of {total} "
                    f"decoder blocks ({layer_summary(list(layers))}); in blocks {layer_summary(missing)}, where "
                    "other targets apply, nothing matches", ctx.entry_path(field, covs[0].pattern),
                    hint=(f"block {missing[0]} holds {short_list(others, 6)} instead" if others else
                          "expected for hybrid / MoE models whose blocks differ"))
    if len(union) < total:
        stack = ctx.arch.main_stack
        missing = sorted(set(range(total)) - set(union))
        kinds = sorted({m.cls for i in missing if (m := ctx.arch.module(f"{stack}.{i}")) is not None})
        others = _block_leaves(ctx, missing[0], ctx.adapted)
        pct = 100.0 * len(union) / total
        path, key = ctx.where("target_modules")
        yield ctx.d("LP504", "warning" if pct < 50 else "info",
                    f"the adapter reaches {len(union)} of {total} decoder blocks ({pct:.0f}%); blocks "
                    f"{layer_summary(missing)}" + (f" ({', '.join(kinds)})" if kinds else "") + " get no adapter",
                    path, hint=(f"block {missing[0]} holds {short_list(others, 6)}: target those too, or accept "
                                "that only part of the model adapts") if others else None, key=key)


def layer_indices(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP503: layers_to_transform indices that select nothing."""
    wanted = ctx.lora.layers_to_transform
    if wanted is None:
        return
    spec = ctx.res.spec
    present = {mt.layer_index(n, spec.layers_pattern) for n in ctx.names} - {None}
    items = [wanted] if isinstance(wanted, int) else wanted
    absent = [(i, idx) for i, idx in enumerate(items) if idx not in present]
    if absent:  # one finding for all of them, at the first
        i = absent[0][0]
        path = ("lora", "layers_to_transform", i) if isinstance(wanted, list) else ("lora", "layers_to_transform")
        top = max(present) if present else None
        what = f"layer {absent[0][1]} selects" if len(absent) == 1 else \
            f"layers {', '.join(str(idx) for _, idx in absent)} select"
        yield ctx.d("LP503", "warning", f"{what} nothing: module names hold layer indices "
                    f"{layer_ranges(sorted(present)) if present else '(none)'}", path,
                    hint=f"the highest layer index is {top}" if top is not None else
                    "set layers_pattern to the name of the layer list")


def exclusions(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP508: exclude_modules entries that exclude nothing the targets would adapt."""
    ex = ctx.lora.exclude_modules
    if not ex:
        return
    bare = copy.copy(ctx.res.spec)
    bare.exclude_modules = None
    entries = [ex] if isinstance(ex, str) else list(ex)
    for e in entries:
        is_regex = isinstance(ex, str)
        named = [n for n in ctx.names if mt.entry_matches(e, n, is_regex=is_regex)]
        path = ctx.entry_path("exclude_modules", e)
        if not named:
            close = [] if is_regex else did_you_mean(e, ctx.arch, wrappable_only=False)
            yield ctx.d("LP508", "warning", f"exclude_modules `{e}` matches no module", path,
                        hint=("did you mean " + " or ".join(f"`{c}`" for c in close) + "?") if close else None)
        elif not any(mt.check_target_module_exists(bare, n) == mt.YES for n in named):
            yield ctx.d("LP508", "warning", f"exclude_modules `{e}` excludes nothing: none of the {len(named)} "
                        "module(s) it names is targeted anyway", path)


def patterns(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP508: rank_pattern / alpha_pattern keys that set nothing (no match, or shadowed by an earlier key)."""
    targets = [i.module for i in ctx.modules + ctx.params]
    for field in ("rank_pattern", "alpha_pattern"):
        keys = list(getattr(ctx.lora, field))
        for k in keys:
            matched = [t for t in targets if mt.safe_match(rf"(.*\.)?({k})$", t, origin=k)]
            path = ("lora", field, k)
            if not matched:
                yield ctx.d("LP508", "warning", f"{field} key `{k}` matches no adapted module or parameter "
                            "(it is a regex matched against the end of the name)", path, key=True)
            elif all(mt.pattern_key(keys, t) != k for t in matched):
                yield ctx.d("LP508", "warning", f"{field} key `{k}` never applies: earlier keys take precedence "
                            f"for all {len(matched)} module(s) it matches (PEFT uses the first matching key)",
                            path, key=True)


def modules_to_save(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP511: modules_to_save entries that wrap nothing."""
    for item in ctx.lora.modules_to_save or []:
        if not any(n.endswith(item) for n in ctx.names):
            close = did_you_mean(item, ctx.arch, wrappable_only=False)
            yield ctx.d("LP511", "warning", f"modules_to_save `{item}` matches no module (PEFT ignores it)",
                        ctx.entry_path("modules_to_save", item),
                        hint=("did you mean " + " or ".join(f"`{c}`" for c in close) + "?") if close else None)


def defaults(ctx: Ctx) -> Iterator[Diagnostic]:
    """LP510: PEFT's per-model default targets (or their absence on converted MoE models)."""
    lora, res = ctx.lora, ctx.res
    if lora.target_modules is not None:
        return
    d = res.default_used
    shown = f"`{d}`" if isinstance(d, str) else ", ".join(d or [])
    if d is not None and lora.target_parameters:
        yield ctx.d("LP510", "warning", f"target_modules is not set, so PEFT also adapts its default targets for "
                    f"{ctx.arch.model_type} ({shown}) besides target_parameters", ("lora",),
                    hint="write `target_modules: []` to adapt only the parameters", key=True)
    elif d is not None:
        yield ctx.d("LP510", "info", f"target_modules is not set: PEFT uses its default for {ctx.arch.model_type}: "
                    f"{shown}", ("lora",), hint="write target_modules explicitly to make the choice visible",
                    key=True)
    elif res.moe is not None and not lora.target_parameters:
        yield ctx.d("LP510", "error", f"target_modules is not set and PEFT's transformers-v5 MoE conversion for "
                    f"{ctx.arch.model_type} runs first and leaves an empty target list: PEFT refuses "
                    "(\"No target_modules passed\")", ("lora",),
                    hint="list the modules to adapt, e.g. `target_modules: [q_proj, k_proj, v_proj, o_proj]`",
                    key=True)


CHECKS = (refusals, target_entries, parameter_entries, coverage, layer_indices, exclusions, patterns,
          modules_to_save, defaults)

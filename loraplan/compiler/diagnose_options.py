"""Findings about PEFT's init modes and LoRA variants on the matched modules (lora_options.py),
and what the data-driven inits need at apply time."""

from __future__ import annotations

from collections.abc import Iterator

from loraplan.compiler.diagnose import Ctx, short_list
from loraplan.compiler.lora_options import init_mode, module_findings, param_findings, quantized_names, shrunk
from loraplan.compiler.trainable_tokens import plan_tokens
from loraplan.compiler.weight_tying import embedding_in, tied_with_embedding
from loraplan.schema.diagnostic import Diagnostic

# What each data-driven init needs between get_peft_model and training (PEFT's docs and code).
PREPROCESS = {
    "eva": ("info", "EVA initialises the adapters from calibration batches: after apply, call "
                    "peft.initialize_lora_eva_weights(model, dataloader=...). It redistributes ranks (at most "
                    "r * rho per layer, the same total budget), so the per-layer counts below hold until then"),
    "corda": ("warning", "CorDA needs calibration data before injection: call peft.tuners.lora.corda."
                         "preprocess_corda(model, lora_config, run_model=...) on the model first, or "
                         "get_peft_model raises ('eigens attribute not found')"),
    "lora_ga": ("warning", "LoRA-GA needs gradients from calibration batches: call peft.tuners.lora.loraga."
                           "preprocess_loraga(model, lora_config, train_step=...) first; without it PEFT silently "
                           "falls back to the default init"),
    "loftq": ("info", "LoftQ quantises the base weights itself while it initialises: PEFT needs scipy and "
                      "bitsandbytes installed at apply time"),
}


def options(ctx: Ctx) -> Iterator[Diagnostic]:
    lora = ctx.lora
    quantized = quantized_names(ctx.config, ctx.arch)
    grouped: dict[tuple[str, str, str, str, str | None], list[str]] = {}
    for t in ctx.res.modules:
        for f in module_findings(t.module, t.r, lora, quantized, t.rank_key):
            grouped.setdefault((f.code, f.severity, f.message, f.option, f.hint), []).extend(f.names)
    for p in ctx.res.parameters:
        for f in param_findings(p.name, lora):
            grouped.setdefault((f.code, f.severity, f.message, f.option, f.hint), []).extend(f.names)
    for (code, severity, message, option, hint), names in grouped.items():
        path, key = ctx.where(option)
        yield ctx.d(code, severity, f"{short_list(names)}: {message}", path, hint=hint, key=key)
    narrow = [t for t in ctx.res.modules if shrunk(t.module, t.r, lora)]
    if narrow:
        path, key = ctx.where("init_lora_weights")
        sizes = sorted({min(t.module.in_features or 0, t.module.out_features or 0) for t in narrow})
        yield ctx.d("LP563", "info", f"{lora.init_lora_weights} keeps at most min(in, out) directions: the adapters "
                    f"of {len(narrow)} layer(s) narrower than r ({short_list([t.name for t in narrow])}, width "
                    f"{', '.join(map(str, sizes))}) are smaller than r x (in + out), and the counts say so", path,
                    key=key)
    mode = init_mode(lora.init_lora_weights)
    if mode in PREPROCESS and (ctx.res.modules or ctx.res.parameters):
        severity, text = PREPROCESS[mode]
        if mode == "eva":
            rho = lora.eva_config.rho if lora.eva_config is not None else 2.0
            lo, hi = eva_bounds(ctx.modules, rho)
            now = sum(i.r * (i.in_features + i.out_features) for i in ctx.modules if i.kind in ("linear",
                                                                                                "conv1d_gpt2"))
            text += (f". With rho {rho:g} the Linear adapters' A and B then hold between {lo:,} and {hi:,} "
                     f"parameters ({now:,} before)")
        path, key = ctx.where("init_lora_weights")
        yield ctx.d("LP564", severity, text, path, key=key)


def eva_bounds(modules: list, rho: float) -> tuple[int, int]:
    """Fewest and most A + B parameters EVA's redistribution can give the Linear adapters.

    peft/tuners/lora/eva.py: the budget is the sum of the planned ranks; each layer gets 0 to
    round(r * rho) components (and at most in_features: the SVD of its inputs); the budget goes to
    the components that explain the most variance, which depends on the data, hence a range.
    """
    layers = [(i.in_features + i.out_features, min(round(i.r * rho), i.in_features)) for i in modules
              if i.kind in ("linear", "conv1d_gpt2")]
    budget = sum(i.r for i in modules if i.kind in ("linear", "conv1d_gpt2"))

    def fill(order: list[tuple[int, int]]) -> int:
        left, total = budget, 0
        for width, cap in order:
            take = min(cap, left)
            total, left = total + take * width, left - take
        return total

    return fill(sorted(layers)), fill(sorted(layers, reverse=True))


def tokens_and_tying(ctx: Ctx) -> Iterator[Diagnostic]:
    lora = ctx.lora
    plan = plan_tokens(lora, ctx.arch, ctx.adapted, ctx.res.spec.modules_to_save, ctx.res.modules_to_save)
    path, key = ctx.where("trainable_token_indices")
    for text in plan.errors:
        yield ctx.d("LP566", "error", text, path, key=key)
    for rows in plan.rows:
        yield ctx.d("LP566", "info", f"trains {len(rows.indices)} row(s) of `{rows.module}` (width {rows.dim}): "
                    f"{rows.params} trainable parameters, counted in the totals", path, key=key)
    if plan.tied:
        yield ctx.d("LP566", "info", f"{short_list(plan.tied)} reuse(s) those rows: tied to the input embedding",
                    path, key=key)
    if not lora.ensure_weight_tying:
        return
    path, key = ctx.where("ensure_weight_tying")
    tied = tied_with_embedding(ctx.arch)
    if not tied:
        yield ctx.d("LP568", "warning", "ensure_weight_tying: this model does not tie its output layer to the input "
                    "embedding, so there is nothing to tie (PEFT warns)", path, key=key)
    elif ctx.res.tied:
        yield ctx.d("LP568", "info", f"ensure_weight_tying: {short_list(ctx.res.tied)} get(s) adapters tied to "
                    f"`{ctx.arch.input_embedding}`'s, adapted last (even where no target names them)", path, key=key)
    elif not embedding_in(lora.target_modules) and lora.trainable_token_indices is None and not any(
        m.split(".")[-1] in ("embed_tokens", "lm_head") for m in lora.modules_to_save or []
    ):
        yield ctx.d("LP568", "warning", "ensure_weight_tying: no tied layer (embed_tokens, lm_head) is in "
                    "target_modules, modules_to_save or trainable_token_indices (PEFT warns)", path, key=key)


RUN_TIME = {  # options that change training or serving, not the module tree or the counts
    "alora_invocation_tokens": "aLoRA: each adapter acts only from its invocation tokens on (they must be in every "
                               "input); the adapter cannot be merged into the base weights",
    "velora_config": "VeLoRA: A's backward keeps a compressed copy of its input (less activation memory than the "
                     "estimate assumes)",
    "monteclora_config": "MonteCLoRA: every forward samples num_samples perturbations of A (more compute); the "
                         "sampler's KL / entropy terms are yours to add to the loss",
    "kasa_config": "KaSA truncates the base weights' r smallest singular directions when it injects (destructive: "
                   "keep the original checkpoint); add LoraModel._get_kasa_loss to your loss for beta / gamma",
    "use_bdlora": "BD-LoRA: block-diagonal factors for sharded multi-LoRA serving (nblocks = serving shards)",
    "runtime_config": "runtime_config: used while injecting (ephemeral GPU offload for DoRA's init), never saved",
    "revision": "revision: recorded in adapter_config.json for loading the base model",
}


def run_time(ctx: Ctx) -> Iterator[Diagnostic]:
    """What the run-time-only options will do, so the plan shows them (LP571)."""
    lora = ctx.lora
    for option, text in RUN_TIME.items():
        value = getattr(lora, option)
        if option == "runtime_config":
            value = value.ephemeral_gpu_offload
        if value:
            path, key = ctx.where(option)
            yield ctx.d("LP571", "info", text, path, key=key)


CHECKS = (options, tokens_and_tying, run_time)

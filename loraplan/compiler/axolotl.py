"""What Axolotl's `load_lora` derives from the loaded model, replayed on an Architecture.

Axolotl 0.19.0 (src/axolotl/loaders/adapter.py) builds part of PEFT's LoraConfig from the model
itself, so an Axolotl config only becomes a LoraConfig once the architecture is known:
- `lora_target_linear: true` -> `find_all_linear_names(model)`: the last name component of every
  module that is a torch Linear (bitsandbytes' Linear4bit/Linear8bitLt are subclasses) or whose
  class name contains "Linear" (LlamaLinearScalingRotaryEmbedding aside), minus the output
  embedding's name for the model type (`get_linear_embedding_layers`), unioned with
  `lora_target_modules` and passed to PEFT as a list of names;
- `task_type` from the model class name: SequenceClassification -> SEQ_CLS,
  TokenClassification -> TOKEN_CLS, else CAUSAL_LM; `bias` is always "none";
- `_patch_peft_clippable_linear`: LoRA on a Gemma-4 `Gemma4ClippableLinear` goes to its inner
  `.linear` (PEFT alone refuses the wrapper);
- `_patch_peft_param_wrapper_dropout`: when lora_dropout > 0 and PEFT's transformers-v5 MoE
  conversion turns the targets into fused expert parameters, Axolotl builds PEFT's ParamWrapper
  with dropout 0 (nn.Identity) instead of letting it refuse; the Linear layers keep the dropout.
Findings PEFT stays silent on (a target that matches nothing while others match) are true for
Axolotl too, but Axolotl runs the config: they are warnings worded "Axolotl runs this, but ...".
Pure data work (no torch), so catalog plans stay torch-free.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from loraplan.compiler.architecture import Architecture
from loraplan.compiler.axolotl_tree import axolotl_tree, pinned_transformers
from loraplan.schema.diagnostic import Diagnostic

if TYPE_CHECKING:
    from loraplan.compiler.plan import Injection
    from loraplan.compiler.targets import Resolution
    from loraplan.schema.config import Config
    from loraplan.schema.yaml_source import SourceDoc

# loaders/utils.py get_linear_embedding_layers: model_type -> (input, output) embedding names.
_EMBEDDINGS = {
    "gpt_neox": ("embed_in", "embed_out"),
    "falcon": ("word_embeddings", "lm_head"),
    "nemotron_h": ("embeddings", "lm_head"),
    "bailing_hybrid": ("word_embeddings", "lm_head"),
}
_NOT_LINEAR = ("LlamaLinearScalingRotaryEmbedding",)
CLIPPABLE = "Gemma4ClippableLinear"  # loaders/adapter.py _patch_peft_clippable_linear
PEFT_AXOLOTL, PEFT_LORAPLAN = "0.20.0", "0.21.2"  # Axolotl 0.19.0's pin; constraints/ci.txt


def linear_names(arch: Architecture) -> list[str]:
    """Axolotl's `find_all_linear_names`: leaf names of the linear layers, output embedding removed."""
    names = set()
    for m in arch.modules:
        if m.kind == "linear" or ("Linear" in m.cls and m.cls not in _NOT_LINEAR):
            names.add(m.name.split(".")[-1])
    names.discard(_EMBEDDINGS.get(arch.model_type, ("embed_tokens", "lm_head"))[1])
    return sorted(names)


def task_type(model_class: str) -> str:
    """Axolotl's `_get_peft_task_type`: from the class name of the model it loaded."""
    if "SequenceClassification" in model_class:
        return "SEQ_CLS"
    if "TokenClassification" in model_class:
        return "TOKEN_CLS"
    return "CAUSAL_LM"


def expand(config: Config, arch: Architecture, source: SourceDoc | None = None
           ) -> tuple[Config, Architecture, list[Diagnostic]]:
    """The native Config with Axolotl's model-derived settings, on the tree Axolotl's transformers builds."""
    if config.axolotl is None:
        return config, arch, []
    arch, diffs = axolotl_tree(arch)
    notes = [_tree_note(config, arch, diffs, source)] if diffs else []
    remote = _remote_class(arch) if config.axolotl.trust_remote_code else None
    if remote:
        notes.append(_at(Diagnostic(
            "LP411", "warning",
            f"trust_remote_code: true and this model's config.json has an auto_map, so Axolotl (through transformers) "
            f"builds the repository's own code ({remote}), not transformers' {arch.model_class} that this plan is "
            "made from: module names, and so the targets, may differ",
            hint="plan against the repository's own modules (a live model, `--arch`), or drop trust_remote_code to "
            "train transformers' built-in class"), source, ("axolotl", "trust_remote_code")))
    update: dict = {"task_type": task_type(arch.model_class), "bias": "none"}
    if config.axolotl.target_linear:
        listed = config.lora.target_modules
        listed = listed if isinstance(listed, list) else [] if listed is None else [listed]
        # the user's entries first (findings point at them), then the linear layers' names
        update["target_modules"] = list(dict.fromkeys(listed)) + [n for n in linear_names(arch) if n not in listed]
    return config.model_copy(update={"lora": config.lora.model_copy(update=update)}), arch, notes


def moe_expert_parameters(config: Config, arch: Architecture, quantized: set[str]) -> set[str]:
    """Axolotl's `quantize_moe_experts` (monkeypatch/moe_quant.py): on load, every parameter of 3 or more
    dimensions whose name contains "expert", outside a bitsandbytes Linear, is quantised by bitsandbytes
    (4-bit nf4 with double quantisation, or row-wise int8 with load_in_8bit)."""
    if config.axolotl is None or not config.axolotl.quantize_moe_experts:
        return set()
    if not (config.load_in_4bit or config.load_in_8bit):
        return set()
    return {p.name for p in arch.parameters
            if len(p.shape) >= 3 and "expert" in p.name.lower() and p.module not in quantized}


def _peft_version_notes(config: Config, res: Resolution, source: SourceDoc | None) -> list[Diagnostic]:
    """Where Axolotl's pinned PEFT 0.20.0 would select differently from the PEFT 0.21.2 this plan replays.

    The one difference in what is adapted: with layers_pattern, 0.21 reads the layer index of a module
    whose name starts with the pattern (`layers.3.mlp`); 0.20 needs a dot before it, finds no index,
    and so layers_to_transform drops that module.
    """
    pattern = config.lora.layers_pattern
    if config.lora.layers_to_transform is None or not pattern:
        return []
    patterns = [pattern] if isinstance(pattern, str) else pattern
    lost = [t.name for t in res.modules if any(t.name.startswith(f"{p}.") for p in patterns)]
    if not lost:
        return []
    return [_at(Diagnostic(
        "LP412", "warning",
        f"PEFT versions differ here: this plan shows PEFT {PEFT_LORAPLAN} (loraplan's), which reads the layer index "
        f"of {len(lost)} module(s) whose name starts with the layers_pattern (`{lost[0]}`, ...); Axolotl "
        f"{config.axolotl.version if config.axolotl else ''} pins PEFT {PEFT_AXOLOTL}, which finds no index there, "
        "so under Axolotl layers_to_transform drops them"), source, ("lora", "layers_pattern"))]


def _remote_class(arch: Architecture) -> str | None:
    """The auto_map class a catalog config names for causal LMs (None: no remote code to run)."""
    if arch.source != "catalog":
        return None
    import json

    from loraplan.compiler.catalog import lookup

    entry = lookup(arch.name)
    if entry is None:
        return None
    auto_map = json.loads(entry.hf_config_path.read_text(encoding="utf-8")).get("auto_map") or {}
    return auto_map.get("AutoModelForCausalLM") or next(iter(auto_map.values()), None)


def _tree_note(config: Config, arch: Architecture, diffs: list[dict], source: SourceDoc | None) -> Diagnostic:
    said = "; ".join(f"`{d['modules']}` ({len(d.get('indices') or []) or 'every'} layer(s)) is {d['axolotl']} there, "
                     f"{d['manifest']} in {arch.transformers_version}" for d in diffs)
    diag = Diagnostic(
        "LP408", "info",
        f"module tree: loraplan's catalog builds {arch.model_class} with transformers {arch.transformers_version}; "
        f"Axolotl {config.axolotl.version} pins transformers {pinned_transformers()}, whose tree differs: {said}. "
        "This plan uses Axolotl's tree", hint="a plan of the same config in the native dialect shows the "
        f"transformers {arch.transformers_version} tree")
    return _at(diag, source, ("base_model",))


def _at(diag: Diagnostic, source: SourceDoc | None, path: tuple) -> Diagnostic:
    span = source.span(path, key=True) if source is not None else None
    return diag.at(span, source.file) if span is not None and source is not None else diag


def module_tree(arch: Architecture, notes: list[Diagnostic]) -> str | None:
    """Which transformers version the plan's module tree comes from, for the plan's header."""
    if not arch.transformers_version:
        return None
    text = f"transformers {arch.transformers_version}"
    if any(d.code == "LP408" for d in notes):
        text += f", with the modules Axolotl's pinned transformers {pinned_transformers()} builds differently (LP408)"
    return text


def _dropout_patched(config: Config, res: Resolution) -> bool:
    """load_lora applies the ParamWrapper patch: dropout set and parameters from PEFT's conversion."""
    return bool(config.lora.lora_dropout) and not config.lora.target_parameters and bool(res.parameters)


def patch_resolution(config: Config, res: Resolution, arch: Architecture,
                     source: SourceDoc | None = None) -> list[Diagnostic]:
    """Replay Axolotl's PEFT patches on PEFT's resolution: its ClippableLinear redirect, its dropout patch."""
    if config.axolotl is None:
        return []
    notes = []
    redirected = _clippable_redirect(res, arch)
    if redirected:
        notes.append(_at(Diagnostic(
            "LP407", "info",
            f"Axolotl patches PEFT so that LoRA on the {len(redirected)} {CLIPPABLE} module(s) the targets match "
            f"(`{redirected[0]}`, ...) wraps their inner `.linear` (PEFT alone refuses the wrapper)"),
            source, ("lora", "target_modules")))
    if _dropout_patched(config, res):
        res.refusals = [r for r in res.refusals if not (r.kind == "param_invalid" and r.option == "lora_dropout")]
    return notes


def _clippable_redirect(res: Resolution, arch: Architecture) -> list[str]:
    """`_patch_peft_clippable_linear`: a matched Gemma4ClippableLinear is adapted through its inner
    `.linear` (PEFT's own check would refuse the wrapper), with the rank and alpha of the wrapper's name."""
    from loraplan.compiler import matching as mt
    from loraplan.compiler.targets import ModuleTarget

    clip = [n for n in res.unwrappable if (m := arch.module(n)) is not None and m.cls == CLIPPABLE]
    if not clip:
        return []
    res.unwrappable = [n for n in res.unwrappable if n not in clip]
    for r in res.refusals:
        if r.kind == "type":
            r.names = [n for n in r.names if n not in clip]
    res.refusals = [r for r in res.refusals if r.kind != "type" or r.names]
    targeted = {t.name for t in res.modules}
    for name in clip:
        inner = arch.module(f"{name}.linear")
        if inner is not None and inner.name not in targeted:
            r, alpha, rk, ak = mt.rank_and_alpha(res.spec, name)
            res.modules.append(ModuleTarget(inner.name, inner, r, alpha, rk, ak))
    order = {m.name: i for i, m in enumerate(arch.modules)}
    res.modules.sort(key=lambda t: order.get(t.name, len(order)))
    return clip


def patch_parameters(config: Config, res: Resolution, params: list[Injection]) -> list[Injection]:
    """Parameter adapters under Axolotl's patch run without dropout."""
    if config.axolotl is None or not _dropout_patched(config, res):
        return params
    return [dataclasses.replace(p, dropout=0.0) for p in params]


def findings(config: Config, res: Resolution, diagnostics: list[Diagnostic],
             source: SourceDoc | None) -> list[Diagnostic]:
    """The compiler's findings as they hold for Axolotl: what its patches change, what it runs anyway."""
    if config.axolotl is None:
        return diagnostics
    stops = any(r.kind in ("no_match", "all_excluded") for r in res.refusals)
    out = []
    for d in diagnostics:
        if d.code == "LP502" and d.severity == "error" and not stops and (res.modules or res.parameters):
            d = dataclasses.replace(d, severity="warning", message="Axolotl runs this, but " + d.message)
        elif d.code == "LP502" and d.severity == "error" and stops:
            d = dataclasses.replace(d, message=d.message + ": Axolotl stops here (PEFT's get_peft_model raises "
                                    "ValueError when no target matches)")
        out.append(d)
    out.extend(_peft_version_notes(config, res, source))
    if _dropout_patched(config, res):
        n = len(res.parameters)
        diag = Diagnostic(
            "LP407", "warning",
            f"lora_dropout {config.lora.lora_dropout} does not reach the {n} fused expert parameter(s) PEFT adapts "
            "here: PEFT's ParamWrapper refuses dropout, so Axolotl patches it to build them with no dropout "
            "(nn.Identity, and Axolotl logs a warning); the Linear layers keep the dropout",
            hint="set lora_dropout: 0 to make every adapter alike, or keep it for the Linear layers")
        out.append(_at(diag, source, ("lora", "lora_dropout")))
    return out

r"""PEFT's target semantics (pinned: peft_tables.PEFT_VERSION), on Architecture data, no torch.

Each function mirrors one piece of peft/tuners/tuners_utils.py or peft/utils/other.py and keeps
its quirks, because a plan is only true if it selects what `get_peft_model` selects:

- a set/list `target_modules` item matches a module named exactly it, or ending in `.item`; only
  *suffix* matches go through the `layers_to_transform` filter (an exact full name skips it);
- a string is `re.fullmatch` over the whole name; `all-linear` becomes the set of full names of
  every Linear/Conv1D except the output embedding (or, for SEQ_CLS, the classifier head);
- 20 or more names are first condensed to the shortest suffixes that select the same modules;
- `exclude_modules` and `modules_to_save` (as `(^|.*\.)m($|\..*)`) exclude before matching;
- `rank_pattern` / `alpha_pattern` keys match as `(.*\.)?(key)$`, first key in order wins;
- `target_parameters` items match `module.param` names exactly or as `.suffix`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from loraplan.compiler.architecture import Architecture, ModuleInfo
from loraplan.compiler.peft_tables import (
    DEFAULT_TARGET_MODULES,
    INCLUDE_LINEAR_LAYERS_SHORTHAND,
    SEQ_CLS_HEAD_NAMES,
)
from loraplan.schema import regex_budget

YES, NO, EXCLUDED = "yes", "no", "excluded"
_DEFAULT_LAYER_RE = re.compile(r".*?\.[^.]*\.(?P<idx>\d+)\.")


@dataclass
class Spec:
    """The LoraConfig fields target matching reads, as PEFT holds them (PEFT rewrites them in place)."""

    target_modules: str | set[str] | None
    exclude_modules: str | set[str] | None = None
    target_parameters: set[str] | list[str] | None = None
    layers_to_transform: int | list[int] | None = None
    layers_pattern: str | list[str] | None = None
    modules_to_save: list[str] | None = None
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    r: int = 8
    lora_alpha: float = 8
    task_type: str | None = None

    @classmethod
    def from_lora(cls, lora: Any) -> Spec:
        """LoraConfig.__post_init__: lists become sets (order never matters to PEFT's matching)."""

        def as_set(v: Any) -> Any:
            return set(v) if isinstance(v, list) else v

        return cls(
            target_modules=as_set(lora.target_modules),
            exclude_modules=as_set(lora.exclude_modules),
            target_parameters=list(lora.target_parameters) if lora.target_parameters is not None else None,
            layers_to_transform=lora.layers_to_transform,
            layers_pattern=lora.layers_pattern,
            modules_to_save=list(lora.modules_to_save) if lora.modules_to_save is not None else None,
            rank_pattern=dict(lora.rank_pattern),
            alpha_pattern=dict(lora.alpha_pattern),
            r=lora.r,
            lora_alpha=lora.lora_alpha,
            task_type=lora.task_type,
        )


def safe_match(pattern: str, text: str, full: bool = False, origin: str | None = None) -> bool:
    """re.match / re.fullmatch that treats an invalid pattern as no match (PEFT would raise; diagnosed).

    Runs under regex_budget (charged to `origin`, the user's own text inside `pattern`): a pattern
    that backtracks for too long raises RegexBudgetError, reported as LP550.
    """
    try:
        return bool(regex_budget.match(pattern, text, full=full, origin=origin))
    except re.error:
        return False


def dotted_suffixes(key: str) -> list[str]:
    """Every `s` with key.endswith("." + s): what follows each dot (O(depth), not O(targets))."""
    return [key[i + 1 :] for i, c in enumerate(key) if c == "."]


def names_match(names: set[str] | list[str] | tuple[str, ...], key: str) -> bool:
    """PEFT's list semantics: `key` equals an item or ends with `.item`."""
    lookup = names if isinstance(names, (set, frozenset)) else set(names)
    return key in lookup or any(s in lookup for s in dotted_suffixes(key))


def entry_matches(entry: str, key: str, *, is_regex: bool) -> bool:
    """Whether one user entry (a regex string, or a list item) names `key`, ignoring every filter."""
    if is_regex:
        return entry.lower() == INCLUDE_LINEAR_LAYERS_SHORTHAND or safe_match(entry, key, full=True)
    return key == entry or key.endswith(f".{entry}")


def is_modules_to_save_excluded(modules_to_save: list[str] | None, key: str) -> bool:
    """check_target_module_exists: adapters never go on (or inside) a modules_to_save module."""
    return bool(modules_to_save) and any(
        safe_match(rf"(^|.*\.){m}($|\..*)", key, origin=m) for m in modules_to_save or []
    )


def is_excluded(spec: Spec, key: str) -> bool:
    ex = spec.exclude_modules
    if ex:
        if isinstance(ex, str):
            if safe_match(ex, key, full=True):
                return True
        elif names_match(ex, key):
            return True
    return is_modules_to_save_excluded(spec.modules_to_save, key)


def layer_index(key: str, layers_pattern: str | list[str] | None) -> int | None:
    """The layer number PEFT reads from a module name (the first numbered segment, not the last)."""
    match = None
    if layers_pattern is None or len(layers_pattern) == 0:
        match = _DEFAULT_LAYER_RE.match(key)
    else:
        for pattern in [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern:
            try:
                match = regex_budget.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", key, origin=pattern)
            except re.error:
                match = None
            if match is not None:
                break
    return int(match.group("idx")) if match else None


def uses_layer_filter(spec: Spec) -> bool:
    idx = spec.layers_to_transform
    return idx is not None and (len(idx) != 0 if isinstance(idx, list) else True)


def passes_layer_filter(spec: Spec, key: str) -> bool:
    idx = layer_index(key, spec.layers_pattern)
    if idx is None:
        return False
    wanted = spec.layers_to_transform
    return idx == wanted if isinstance(wanted, int) else idx in (wanted or [])


def check_target_module_exists(spec: Spec, key: str) -> str:
    """YES, NO or EXCLUDED for one module name, exactly as PEFT decides it."""
    if is_excluded(spec, key):
        return EXCLUDED
    tm = spec.target_modules
    if tm is None and spec.target_parameters is not None:
        return NO
    if tm is None:
        return NO
    if isinstance(tm, str):
        return YES if safe_match(tm, key, full=True) else NO
    if key in tm:
        return YES  # an exact full name: the layer filter is not consulted
    found = any(s in tm for s in dotted_suffixes(key))
    if found and uses_layer_filter(spec):
        found = passes_layer_filter(spec, key)
    return YES if found else NO


def pattern_key(keys: list[str], key: str) -> str | None:
    """get_pattern_key: the first rank/alpha pattern key matching the end of `key` (None: none)."""
    for k in keys:
        if safe_match(rf"(.*\.)?({k})$", key, origin=k):
            return k
    return None


def rank_and_alpha(spec: Spec, key: str) -> tuple[int, float, str | None, str | None]:
    rk = pattern_key(list(spec.rank_pattern), key)
    ak = pattern_key(list(spec.alpha_pattern), key)
    r = spec.rank_pattern[rk] if rk is not None else spec.r
    alpha = spec.alpha_pattern[ak] if ak is not None else spec.lora_alpha
    return r, alpha, rk, ak


def find_minimal_target_modules(targets: set[str], others: set[str]) -> set[str]:
    """_find_minimal_target_modules: shortest suffixes that separate `targets` from `others`."""

    def suffixes(s: str) -> list[str]:
        parts = s.split(".")
        return [".".join(parts[i:]) for i in range(len(parts))][::-1]

    other_suffixes = {sfx for item in others for sfx in suffixes(item)}
    required: set[str] = set()
    for item, sfxs in sorted(((t, suffixes(t)) for t in targets), key=lambda tup: tup[1]):
        for sfx in sfxs:
            if sfx in required or sfx in other_suffixes:
                continue
            if not any(x in required for x in dotted_suffixes(item)):
                required.add(sfx)
                break
    return required or set(targets)


def condense(spec: Spec, all_names: list[str]) -> set[str] | None:
    """inject_adapter's optimisation for 20+ names; returns the condensed set when it shrank."""
    from loraplan.compiler.peft_tables import MIN_TARGET_MODULES_FOR_OPTIMIZATION

    tm = spec.target_modules
    if not isinstance(tm, (set, list)) or len(tm) < MIN_TARGET_MODULES_FOR_OPTIMIZATION:
        return None
    tm = set(tm)
    sfx = tuple("." + t for t in tm)
    others = {n for n in all_names if n not in tm and not n.endswith(sfx)}
    new = find_minimal_target_modules(tm, others)
    return new if len(new) < len(tm) else None


def classifier_head(arch: Architecture) -> str | None:
    """all-linear's SEQ_CLS exclusion: the first top-level `score` / `classifier` attribute."""
    for name in SEQ_CLS_HEAD_NAMES:
        if arch.module(name) is not None:
            return name
    return None


def all_linear_names(arch: Architecture, task_type: str | None) -> set[str]:
    """_maybe_include_all_linear_layers: Linear and GPT-2 Conv1D modules minus the output layer."""
    names = {m.name for m in arch.modules if m.kind in ("linear", "conv1d_gpt2")}
    if arch.output_embedding is not None:
        names.discard(arch.output_embedding)
    elif task_type == "SEQ_CLS" and arch.model_type != "custom":
        head = classifier_head(arch)
        if head is not None:
            names.discard(head)
    return names


def default_targets(model_type: str) -> list[str] | str | None:
    return DEFAULT_TARGET_MODULES.get(model_type)


def modules_to_save_hits(modules_to_save: list[str] | None, names: list[str]) -> list[str]:
    """_set_trainable: every module whose name ends with an item (plain endswith: no dot needed)."""
    if not modules_to_save:
        return []
    return [n for n in names if any(n.endswith(m) for m in modules_to_save)]


def main_stack_index(arch: Architecture, name: str) -> int | None:
    """Index of the main decoder block `name` sits in (for coverage), None outside the main stack."""
    stack = getattr(arch, "main_stack", None)
    if stack is None:
        return None
    prefix = f"{stack}." if stack else ""
    if not name.startswith(prefix):
        return None
    head = name[len(prefix) :].split(".", 1)[0]
    return int(head) if head.isdigit() else None


def wrappable(m: ModuleInfo) -> bool:
    from loraplan.compiler.architecture import LORA_WRAPPABLE

    return m.kind in LORA_WRAPPABLE

"""layer_replication: the module tree PEFT builds before it injects (peft.tuners.tuners_utils.replicate_layers).

PEFT descends `.model` attributes from the root (then `.bert`), takes `layers` (else `encoder.layer`,
else `h`), and rebuilds that ModuleList from the [start, end) ranges: each new block is a deep copy
whose parameters are the original block's (shared storage), so every copy gets its own adapters
while the base weights are counted once; blocks no range names are dropped. The plan is made on
that tree; its fingerprint stays the unreplicated model's (that is the model `apply` receives).
"""

from __future__ import annotations

import dataclasses

from loraplan.compiler.architecture import Architecture


class ReplicationError(ValueError):
    """What PEFT raises for this layer_replication on this model."""


def layer_list(arch: Architecture) -> str:
    """The ModuleList replicate_layers rebuilds, by its module name."""
    names = {m.name: m for m in arch.modules}
    prefix = ""
    while f"{prefix}model" in names:
        prefix = f"{prefix}model."
    if f"{prefix}bert" in names:
        prefix = f"{prefix}bert."
    for candidate in ("layers", "encoder.layer", "h"):
        m = names.get(prefix + candidate)
        if m is not None:
            if m.cls == "ModuleList":
                return m.name
            break
    raise ReplicationError("PEFT finds no layer list at model[.model]*.layers, .encoder.layer or .h "
                           "(replicate_layers: 'Could not locate the layers attribute in the model')")


def replicate(arch: Architecture, ranges: list[list[int]]) -> Architecture:
    stack = layer_list(arch)
    if arch.model_type == "custom":
        raise ReplicationError(f"PEFT rebuilds `{stack}` and then reads `config.num_hidden_layers` of the module "
                               "holding it; this model has no transformers config (AttributeError)")
    count = arch.layer_stacks.get(stack) or len({m.name.split(".")[stack.count(".") + 1] for m in arch.modules
                                                 if m.name.startswith(stack + ".")})
    order = [i for start, end in ranges for i in range(start, end)]
    bad = sorted({i for i in order if i >= count})
    if bad:
        raise ReplicationError(f"layer_replication names layer(s) {', '.join(map(str, bad))}, but `{stack}` has "
                               f"{count} layers (PEFT raises IndexError)")
    head = stack + "."

    def split(name: str) -> tuple[int, str] | None:
        if not name.startswith(head):
            return None
        idx, _, rest = name[len(head):].partition(".")
        return (int(idx), rest) if idx.isdigit() else None

    def renamed(name: str, j: int, rest: str) -> str:
        return f"{head}{j}" + (f".{rest}" if rest else "")

    modules, params, tied = [], [], {}
    blocks: dict[int, list] = {}
    for m in arch.modules:
        s = split(m.name)
        if s is not None:
            blocks.setdefault(s[0], []).append((s[1], m))
    inserted = False
    for m in arch.modules:
        if split(m.name) is not None:
            if not inserted:
                for j, i in enumerate(order):
                    for rest, sub in blocks.get(i, []):
                        layer = j if sub.layer is not None else None
                        modules.append(dataclasses.replace(sub, name=renamed(sub.name, j, rest), layer=layer,
                                                           extra=dict(sub.extra)))
                inserted = True
            continue
        modules.append(m)
    first: dict[int, int] = {}
    for j, i in enumerate(order):
        first.setdefault(i, j)
    for p in arch.parameters:
        s = split(p.module) if p.module.startswith(head) else None
        if s is None:
            params.append(p)
            continue
        i, rest = s
        if i not in first:
            continue  # a block no range names is dropped
        leaf = p.name[len(p.module) + 1:]
        for j in [j for j, k in enumerate(order) if k == i]:
            module = renamed(p.module, j, rest)
            name = f"{module}.{leaf}"
            if j == first[i]:
                src = name
                params.append(dataclasses.replace(p, name=name, module=module, layer=j))
            else:
                tied[name] = src
    for dup, src in arch.tied_parameters.items():
        s = split(dup.rpartition(".")[0])
        if s is None:
            tied[dup] = src
    stacks = dict(arch.layer_stacks)
    stacks[stack] = len(order)
    main = arch.main_stack
    return dataclasses.replace(
        arch, modules=modules, parameters=params, tied_parameters=tied, layer_stacks=stacks,
        num_layers=len(order) if main == stack else arch.num_layers, _index=None,
    )

"""Compact manifests: an Architecture with each repeated decoder block stored once.

A model is a short body of modules plus block lists (`model.layers`) whose blocks mostly repeat.
Each block of a list is stored as a template (its modules relative to `<list>.<i>`) and the list
as a run-length map block -> template, so a 126-layer model keeps one template (or a few: first-k
dense layers, cross-attention layers, hybrid Mamba/attention). Expansion is one pass over plain
lists: json + stdlib only, no torch, a few milliseconds even for the largest models.

Rows (JSON lists, positional so that parsing stays fast):
  module: [name, class index, kind, in, out, bias, params, weight_shape, layer, extra, own_params]
  own_params: [[local name, shape, layer], ...]   (tied duplicates are not listed, as PyTorch does)
In templates names are relative to the block (`""` is the block itself) and `layer` -1 means
"this block's index". Body rows carry absolute names and layers; a stack entry in the body is
["@stack", prefix, [[template, count], ...]].
"""

from __future__ import annotations

import copy
import json
from typing import Any

from loraplan.compiler.architecture import Architecture, ModuleInfo, ParamInfo

FORMAT = 1
_INDEX = -1  # layer code: "the block's own index"
_STACK = "@stack"


def _layer_code(layer: int | None, index: int | None) -> int | None:
    return _INDEX if index is not None and layer == index else layer


def _row(m: ModuleInfo, rel: str, plist: list[ParamInfo], index: int | None, classes: dict[str, int]) -> list[Any]:
    cls = classes.setdefault(m.cls, len(classes))
    own = [[p.name[len(m.name) + 1 :], list(p.shape), _layer_code(p.layer, index)] for p in plist]
    return [
        rel,
        cls,
        m.kind,
        m.in_features,
        m.out_features,
        1 if m.bias else 0,
        m.params,
        list(m.weight_shape) if m.weight_shape is not None else None,
        _layer_code(m.layer, index),
        m.extra or None,
        own or None,
    ]


def encode(arch: Architecture, *, config_file: str | None = None, config_sha256: str | None = None) -> dict:
    """Manifest dict of `arch` (the inverse of `decode`, names and sources aside)."""
    by_module: dict[str, list[ParamInfo]] = {}
    for p in arch.parameters:
        by_module.setdefault(p.module, []).append(p)
    classes: dict[str, int] = {}
    templates: list[list[list[Any]]] = []
    template_ids: dict[str, int] = {}
    body: list[list[Any]] = []
    stacks = {p: n for p, n in arch.layer_stacks.items() if p}
    mods = arch.modules
    k = 0
    while k < len(mods):
        m = mods[k]
        body.append(_row(m, m.name, by_module.get(m.name, []), None, classes))
        k += 1
        if m.name not in stacks:
            continue
        prefix, n = m.name, stacks[m.name]
        blocks: list[list[list[Any]]] = [[] for _ in range(n)]
        last = -1
        start = k
        ok = True
        while k < len(mods) and mods[k].name.startswith(prefix + "."):
            rest = mods[k].name[len(prefix) + 1 :]
            head, _, tail = rest.partition(".")
            i = int(head) if head.isdigit() else -1
            if not 0 <= i < n or i < last:
                ok = False
                break
            last = i
            blocks[i].append(_row(mods[k], tail, by_module.get(mods[k].name, []), i, classes))
            k += 1
        if not ok:  # not a plain preorder block list: store its modules as body rows
            k = start
            continue
        runs: list[list[int]] = []
        for rows in blocks:
            key = json.dumps(rows, separators=(",", ":"))
            tid = template_ids.setdefault(key, len(templates))
            if tid == len(templates):
                templates.append(rows)
            if runs and runs[-1][0] == tid:
                runs[-1][1] += 1
            else:
                runs.append([tid, 1])
        body.append([_STACK, prefix, runs])
    root = [[p.name, list(p.shape), p.layer] for p in by_module.get("", [])]
    return {
        "format": FORMAT,
        "transformers_version": arch.transformers_version,
        "config_file": config_file,
        "config_sha256": config_sha256,
        "model_type": arch.model_type,
        "model_class": arch.model_class,
        "output_embedding": arch.output_embedding,
        "input_embedding": arch.input_embedding,
        "tied_embeddings": arch.tied_embeddings,
        "num_layers": arch.num_layers,
        "main_stack": arch.main_stack,
        "layer_stacks": dict(arch.layer_stacks),
        "tied_parameters": dict(arch.tied_parameters),
        "config_attrs": dict(arch.config_attrs),
        "num_modules": len(arch.modules),
        "total_params": arch.total_params,
        "classes": list(classes),
        "root_params": root,
        "templates": templates,
        "body": body,
    }


def decode(data: dict, name: str, source: str = "catalog") -> Architecture:
    """Expand a manifest dict into an Architecture."""
    if data.get("format") != FORMAT:
        raise ValueError(f"manifest format {data.get('format')!r} is not {FORMAT}: regenerate the catalog")
    classes = data["classes"]
    modules: list[ModuleInfo] = []
    params: list[ParamInfo] = [ParamInfo(n, "", tuple(s), layer) for n, s, layer in data["root_params"]]
    add_module = modules.append
    add_param = params.append
    templates = [[_prepare(row, classes) for row in rows] for rows in data["templates"]]
    for row in data["body"]:
        if row[0] == _STACK:
            prefix, runs = row[1], row[2]
            i = 0
            for tid, count in runs:
                rows = templates[tid]
                for _ in range(count):
                    base = f"{prefix}.{i}"
                    for rel, cls, kind, fin, fout, bias, n, wshape, layer, extra, own in rows:
                        full = f"{base}.{rel}" if rel else base
                        add_module(
                            ModuleInfo(
                                full,
                                cls,
                                kind,
                                fin,
                                fout,
                                bias,
                                n,
                                i if layer == _INDEX else layer,
                                wshape,
                                dict(extra) if extra else {},
                            )
                        )
                        if own:
                            for pname, shape, player in own:
                                add_param(ParamInfo(f"{full}.{pname}", full, shape, i if player == _INDEX else player))
                    i += 1
            continue
        rel, cls, kind, fin, fout, bias, n, wshape, layer, extra, own = _prepare(row, classes)
        add_module(ModuleInfo(rel, cls, kind, fin, fout, bias, n, layer, wshape, dict(extra) if extra else {}))
        if own:
            for pname, shape, player in own:
                add_param(ParamInfo(f"{rel}.{pname}", rel, shape, player))
    return Architecture(
        name=name,
        model_type=data["model_type"],
        model_class=data["model_class"],
        modules=modules,
        parameters=params,
        output_embedding=data["output_embedding"],
        input_embedding=data["input_embedding"],
        tied_embeddings=data["tied_embeddings"],
        num_layers=data["num_layers"],
        main_stack=data["main_stack"],
        layer_stacks=dict(data["layer_stacks"]),
        tied_parameters=dict(data["tied_parameters"]),
        source=source,
        transformers_version=data["transformers_version"],
        config_attrs=copy.deepcopy(data["config_attrs"]),  # the parsed manifest is cached: never share
    )


def _prepare(row: list[Any], classes: list[str]) -> tuple:
    """A row with its class name, bool bias and tuple shapes resolved once (shared by all blocks)."""
    rel, cls, kind, fin, fout, bias, n, wshape, layer, extra, own = row
    own_t = tuple((pname, tuple(shape), player) for pname, shape, player in own) if own else None
    return (
        rel,
        classes[cls],
        kind,
        fin,
        fout,
        bool(bias),
        n,
        tuple(wshape) if wshape is not None else None,
        layer,
        extra,
        own_t,
    )


def dumps(data: dict) -> str:
    """Compact JSON with one module row per line, so that regenerated manifests diff well."""

    def enc(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"))

    lines = ["{"]
    keys = [k for k in data if k not in ("templates", "body", "root_params")]
    for key in keys:
        lines.append(f"{json.dumps(key)}:{enc(data[key])},")
    lines.append(f'"root_params":{enc(data["root_params"])},')
    lines.append('"templates":[')
    for t, rows in enumerate(data["templates"]):
        inner = ",\n".join(enc(r) for r in rows)
        lines.append("[\n" + inner + "\n]" + ("," if t < len(data["templates"]) - 1 else ""))
    lines.append("],")
    lines.append('"body":[')
    lines.append(",\n".join(enc(r) for r in data["body"]))
    lines.append("]}")
    return "\n".join(lines) + "\n"

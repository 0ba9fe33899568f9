"""Pre-quantized checkpoints: the stored weight format, its size, and what PEFT can adapt in it.

The format comes from config.json's `quantization_config` (what transformers' AutoHfQuantizer
reads), or, for a catalog alias whose own config.json was never seen, from the evidence recorded
in KNOWN (the catalog's sources*.tsv notes). The size model per quantised weight of n elements:

  nvfp4   n/2 + n/16 (one FP8 scale per 16 values)       mxfp4  n/2 + n/32 (one E8M0 scale per 32)
  fp8     n + 4 per weight block (fp32 scale)            int k-bit (GPTQ, AWQ, compressed int)
  bnb     as memory.py's NF4 / LLM.int8 terms                     n*k/8 + (2 + k/8) per group

PEFT's LoRA layers per backend are those peft/tuners/lora dispatches to (bnb, gptq, awq, aqlm,
eetq, hqq, inc, torchao, and the default layer for any nn.Linear subclass).
"""

from __future__ import annotations

import re
from typing import Any

from loraplan.compiler.architecture import Architecture
from loraplan.schema.diagnostic import Diagnostic

# Checkpoints the catalog plans as a bf16 sibling, whose weights are stored quantised (sources*.tsv).
KNOWN: dict[str, dict[str, Any]] = {
    "nvidia/qwen3-30b-a3b-nvfp4": {"method": "nvfp4", "evidence": "its hf_quant_config.json (ModelOpt 0.33.0 NVFP4, "
                                   "group 16, lm_head and router gates excluded), sources-C.tsv"},
    "nvidia/gemma-4-26b-a4b-nvfp4": {"method": "nvfp4", "evidence": "Axolotl examples/gemma4/26b-a4b-moe-nvfp4-lora"
                                     ".yaml: 'an NVFP4 (modelopt) checkpoint', sources-E.tsv"},
    "nvidia/qwen3-next-80b-a3b-instruct-nvfp4": {"method": "nvfp4", "exclude": r"linear_attn",
                                                 "evidence": "ModelOpt NVFP4 with the Gated DeltaNet layers kept "
                                                 "BF16 per its hf_quant_config.json, sources-C.tsv"},
    "mapika/glm-5.2-nvfp4": {"method": "nvfp4", "scope": "experts", "evidence": "ModelOpt NVFP4 on the routed and "
                             "shared experts only, sources-C.tsv"},
    "nvidia/nvidia-nemotron-3-nano-30b-a3b-nvfp4": {"method": "nvfp4", "evidence": "NVFP4 scheme in its separate "
                                                    "hf_quant_config.json, sources-B.tsv"},
    "nvidia/deepseek-v4-flash-nvfp4": {"method": "nvfp4", "scope": "experts", "evidence": "expert_dtype fp4, NVFP4 "
                                       "settings in its hf_quant_config.json, sources-C.tsv"},
}

# method -> (PEFT's LoRA path for it, what must be installed, can LoRA wrap the quantised Linears as loaded)
PEFT_SUPPORT: dict[str, tuple[str, str, bool]] = {
    "bitsandbytes": ("PEFT's bnb LoRA layers (peft/tuners/lora/bnb.py)", "bitsandbytes", True),
    "gptq": ("PEFT's GPTQLoraLinear (peft/tuners/lora/gptq.py)", "gptqmodel", True),
    "awq": ("PEFT's AwqLoraLinear (peft/tuners/lora/awq.py)", "gptqmodel", True),
    "aqlm": ("PEFT's AQLM layer (peft/tuners/lora/aqlm.py)", "aqlm", True),
    "eetq": ("PEFT's EETQ layer (peft/tuners/lora/eetq.py)", "eetq", True),
    "hqq": ("PEFT's HQQ layer (peft/tuners/lora/hqq.py)", "hqq", True),
    "torchao": ("PEFT's torchao layer (peft/tuners/lora/torchao.py)", "torchao", True),
    "fp8": ("transformers' FP8Linear is an nn.Linear subclass: PEFT's default LoRA Linear wraps it",
            "a GPU with FP8 support (transformers' finegrained_fp8 kernels)", True),
    "nvfp4": ("none: transformers' NVFP4Linear is not an nn.Linear and peft/tuners/lora has no layer for it; "
              "load it dequantised (the weights then take bf16 memory) or train with a tool's own NVFP4 kernels",
              "a GPU with NVFP4 support", False),
    "mxfp4": ("the experts (Mxfp4GptOssExperts) are not nn.Linear: LoRA goes on the unquantised attention "
              "Linears, expert target_parameters need Mxfp4Config(dequantize=True)", "triton kernels", False),
    "compressed-tensors": ("no dedicated layer in peft/tuners/lora: LoRA applies where the loaded module is an "
                           "nn.Linear, e.g. with CompressedTensorsConfig(dequantize=True)", "compressed-tensors",
                           False),
}


def _method(q: dict[str, Any]) -> str:
    m = str(q.get("quant_method") or "").lower()
    if m in ("bitsandbytes", "bitsandbytes_4bit", "bitsandbytes_8bit") or q.get("load_in_4bit") or q.get(
            "load_in_8bit"):
        return "bitsandbytes"
    if m in ("fp8", "fbgemm_fp8", "mxfp8"):
        return "fp8"
    if m in ("modelopt",) and "fp4" in str(q.get("quant_algo", "")).lower():
        return "nvfp4"
    return m or "unknown"


def stored_format(data: dict | None, name: str | None = None) -> dict[str, Any] | None:
    """The stored format as data (method, bits, group, scope, source), or None for unquantised weights."""
    q = data.get("quantization_config") if isinstance(data, dict) else None
    if isinstance(q, dict) and q:
        fmt: dict[str, Any] = {"method": _method(q), "source": "config.json quantization_config"}
        method = fmt["method"]
        if method == "bitsandbytes":
            four = bool(q.get("load_in_4bit")) or q.get("quant_method") == "bitsandbytes_4bit"
            fmt.update(bits=4 if four else 8, quant_type=q.get("bnb_4bit_quant_type", "nf4"),
                       double_quant=bool(q.get("bnb_4bit_use_double_quant")))
        elif method in ("gptq", "awq"):
            fmt.update(bits=int(q.get("bits") or q.get("w_bit") or 4), group=int(q.get("group_size")
                       or q.get("q_group_size") or 128))
        elif method == "fp8":
            block = q.get("weight_block_size")
            fmt.update(bits=8, block=list(block) if isinstance(block, list) else None)
        elif method == "compressed-tensors":
            fmt.update(_compressed(q))
        skip = q.get("modules_to_not_convert") or q.get("ignore") or q.get("llm_int8_skip_modules") or []
        fmt["exclude_names"] = [s for s in skip if isinstance(s, str)] if isinstance(skip, list) else []
        return fmt
    known = KNOWN.get((name or "").strip().lower())
    if known:
        return {"method": known["method"], "source": known["evidence"], "scope": known.get("scope", "linear"),
                "exclude": known.get("exclude")}
    return None


def _compressed(q: dict[str, Any]) -> dict[str, Any]:
    groups = q.get("config_groups") or {}
    first = next(iter(groups.values()), {}) if isinstance(groups, dict) else {}
    weights = first.get("weights") or {} if isinstance(first, dict) else {}
    bits = int(weights.get("num_bits") or 8)
    fmt_name = str(q.get("format") or "")
    if "nvfp4" in fmt_name:
        return {"scheme": fmt_name, "as": "nvfp4"}
    if weights.get("type") == "float" and bits == 8:
        return {"scheme": fmt_name, "as": "fp8", "bits": 8}
    return {"scheme": fmt_name, "as": "int", "bits": bits, "group": int(weights.get("group_size") or 128)}


def _excluded(name: str, fmt: dict[str, Any], arch: Architecture) -> bool:
    if name == arch.output_embedding or name == arch.input_embedding:
        return True
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("gate", "router") and not name.endswith("experts.gate"):
        return True  # MoE routers stay unquantised in every scheme here
    for skip in fmt.get("exclude_names") or []:
        if _skips(skip, name):
            return True
    return bool(fmt.get("exclude") and re.search(fmt["exclude"], name))


def _skips(key: str, name: str) -> bool:
    """transformers' should_convert_module: a prefix up to a module boundary, a regex with that
    boundary, or a suffix; compressed-tensors' `re:` entries are plain regexes."""
    try:
        if key.startswith("re:"):
            return re.match(key[3:], name) is not None
        return re.match(rf"(?:{key})(?:(?<=\.)|(?=\.|$))", name) is not None or name.endswith(key)
    except re.error:
        return name.endswith(key)


def quantised_weights(arch: Architecture, fmt: dict[str, Any]) -> dict[str, int]:
    """parameter name -> elements, for every weight stored in the quantised format."""
    if fmt["method"] == "bitsandbytes":  # the modules replace_with_bnb_linear converted
        from loraplan.compiler.counting import quantized_modules

        chosen = quantized_modules(arch, fmt.get("exclude_names") or None)
        return {p.name: p.numel for p in arch.parameters if p.module in chosen and p.name == f"{p.module}.weight"}
    linear = {m.name for m in arch.modules if m.kind == "linear" and not _excluded(m.name, fmt, arch)}
    experts_only = fmt.get("scope") == "experts"
    out = {}
    for p in arch.parameters:
        in_experts = ".experts." in f".{p.module}." or p.module.endswith("experts")
        if p.module in linear and p.name == f"{p.module}.weight":
            if not experts_only or in_experts:
                out[p.name] = p.numel
        elif len(p.shape) == 3 and in_experts and not _excluded(p.module, fmt, arch):  # fused MoE experts
            out[p.name] = p.numel
    return out


def _bytes(n: int, rows: int, fmt: dict[str, Any]) -> float:
    kind = fmt.get("as") or fmt["method"]
    if kind == "nvfp4":
        return n / 2 + n / 16
    if kind == "mxfp4":
        return n / 2 + n / 32
    if kind == "fp8":
        block = fmt.get("block") or None
        scales = -(-n // (block[0] * block[1])) if block else rows
        return n + 4 * scales
    if kind == "bitsandbytes":
        if fmt.get("bits") == 8:
            return n + 4 * rows
        blocks = -(-n // 64)
        return n / 2 + (blocks + 4 * -(-blocks // 256) if fmt.get("double_quant") else 4 * blocks)
    bits = int(fmt.get("bits") or 4)
    group = int(fmt.get("group") or 128)
    group = group if group > 0 else max(1, n // max(1, rows))
    return n * bits / 8 + (n / group) * (2 + bits / 8)


def describe(fmt: dict[str, Any]) -> str:
    kind = fmt.get("as") or fmt["method"]
    bits = f" {fmt['bits']}-bit" if fmt.get("bits") and kind not in ("fp8",) else ""
    group = f", group {fmt['group']}" if fmt.get("group") else ""
    scheme = f" ({fmt['scheme']})" if fmt.get("scheme") else ""
    return f"{fmt['method']}{scheme}{bits if kind != 'nvfp4' else ''}{group}".replace("  ", " ")


def stored_weight_bytes(arch: Architecture, fmt: dict[str, Any], dtype: str, dtype_bytes: int) -> tuple[int, int, str]:
    """(bytes, largest quantised weight, description) of the weights as the checkpoint stores them."""
    quant = quantised_weights(arch, fmt)
    total, largest = 0.0, 0
    for p in arch.parameters:
        if p.name in quant:
            total += _bytes(p.numel, p.shape[0] if p.shape else 1, fmt)
            largest = max(largest, p.numel)
        else:
            total += p.numel * dtype_bytes
    what = (f"{len(quant)} weights stored pre-quantized in {describe(fmt)} (from {fmt['source']}), "
            f"everything else in {dtype}")
    return int(total), largest, what


def diagnose(config: Any, arch: Architecture, adapted: list[str]) -> list[Diagnostic]:
    """LP528 (bitsandbytes asked on a quantised checkpoint) and LP529 (what PEFT can adapt in it)."""
    fmt = (arch.origin or {}).get("quantization")
    if not fmt:
        return []
    out: list[Diagnostic] = []
    name = (arch.origin or {}).get("alias") or arch.name
    method = fmt["method"]
    if config.load_in_4bit or config.load_in_8bit:
        if method == "bitsandbytes":
            out.append(Diagnostic("LP528", "warning",
                                  f"{name} is already stored in bitsandbytes {fmt.get('bits')}-bit; "
                                  "transformers uses the checkpoint's quantization_config and ignores yours",
                                  hint="drop `quantization:` (Axolotl: load_in_4bit / bnb_*) or use the unquantized "
                                  "checkpoint to choose the settings"))
        else:
            sibling = (arch.origin or {}).get("alias_of")
            out.append(Diagnostic("LP528", "error", f"bitsandbytes QLoRA asked on {name}, a checkpoint already "
                                  f"quantized in {describe(fmt)}: transformers refuses a BitsAndBytesConfig for a "
                                  "model quantized with another method",
                                  hint=(f"use the unquantized checkpoint ({sibling}) for QLoRA, or " if sibling else
                                        "use the unquantized checkpoint for QLoRA, or ")
                                  + "drop load_in_4bit / load_in_8bit to train LoRA on the stored format"))
    path, needs, wraps = PEFT_SUPPORT.get(method, (f"no LoRA layer for '{method}' in peft/tuners/lora", method,
                                                   False))
    quant = quantised_weights(arch, fmt)
    hit = [m for m in adapted if f"{m}.weight" in quant or m in quant]
    if not wraps and hit:
        out.append(Diagnostic("LP529", "warning", f"{len(hit)} targeted modules of {name} are stored in "
                              f"{describe(fmt)} ({hit[0]}, ...); PEFT's LoRA for this format: {path}",
                              hint=f"needs {needs}; the memory estimate counts the stored format"))
    else:
        out.append(Diagnostic("LP529", "info", f"{name} is stored pre-quantized in {describe(fmt)}; PEFT's LoRA "
                              f"for this format: {path}", hint=f"needs {needs} installed"))
    return out

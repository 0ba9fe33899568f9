"""Synthetic Plans for the renderer tests: exact names and settings, no compiler involved."""

from __future__ import annotations

from typing import Any

from loraplan.compiler.plan import Coverage, Injection, MemoryEstimate, Plan, Totals
from loraplan.schema.diagnostic import Diagnostic


def inj(module: str, *, i: int = 4096, o: int = 4096, r: int = 16, alpha: float = 32, **kw: Any) -> Injection:
    """One linear injection whose params follow from the shapes (r * (in + out))."""
    kw.setdefault("kind", "linear")
    kw.setdefault("dropout", 0.05)
    kw.setdefault("init", True)
    params = kw.pop("params", r * (i + o))
    return Injection(
        module=module, in_features=i, out_features=o, r=r, lora_alpha=alpha, scaling=alpha / r, params=params, **kw
    )


def layers(template: str, indices: Any, **kw: Any) -> list[Injection]:
    return [inj(template.format(n), **kw) for n in indices]


def make_plan(
    injections: list[Injection],
    parameters: list[Injection] | None = None,
    *,
    modules_to_save: list[str] | None = None,
    coverage: list[Coverage] | None = None,
    diagnostics: list[Diagnostic] | None = None,
    memory: MemoryEstimate | None = None,
    config: dict | None = None,
) -> Plan:
    parameters = parameters or []
    adapters = sum(x.params for x in injections + parameters)
    return Plan(
        config=config or {"lora": {"r": 16, "lora_alpha": 32, "bias": "none"}},
        architecture="test/arch",
        model_class="TestForCausalLM",
        architecture_fingerprint="sha256:0000000000000000",
        injections=injections,
        parameters=parameters,
        modules_to_save=modules_to_save or [],
        coverage=coverage or [],
        totals=Totals(adapters, 1_000_000_000, round(100 * adapters / 1_000_000_000, 6), adapters),
        memory=memory,
        diagnostics=diagnostics or [],
        peft_config={},
    )


MEMORY = MemoryEstimate(
    weights_bytes=16 * 2**30,
    adapter_bytes=160 * 2**20,
    gradient_bytes=160 * 2**20,
    optimizer_bytes=320 * 2**20,
    activation_bytes=3 * 2**30,
    overhead_bytes=512 * 2**20,
    total_bytes=16 * 2**30 + 640 * 2**20 + 3 * 2**30 + 512 * 2**20,
    breakdown={
        "weights": 16 * 2**30,
        "adapters": 160 * 2**20,
        "gradients": 160 * 2**20,
        "optimizer": 320 * 2**20,
        "activations": 3 * 2**30,
        "cuda_context": 512 * 2**20,
    },
    assumptions=["weights: all weights in bfloat16", "optimizer adamw_torch: 8 bytes of state per parameter"],
)

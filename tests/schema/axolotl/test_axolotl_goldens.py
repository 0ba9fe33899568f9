"""The Axolotl dialect reproduces Axolotl 0.19.0: every corpus config against its golden.

The goldens are recorded by tools/axolotl_oracle (branch axolotl-oracle) from Axolotl's own
`load_lora` and PEFT's `get_peft_model` on meta-device models; they live in
tests/schema/data/axolotl-goldens/ (GOLDENS.md gives the format). For each config with a golden:
- status ok: loraplan plans it, with the same adapted modules and parameters, the same r, alpha,
  scaling and dropout for each, the same modules_to_save, the same trainable count, and the same
  total (a golden recorded without quantising on meta is compared with the unquantised base's);
- status axolotl_error: loraplan reports an error for it (Axolotl stops, loraplan says why);
- status unresolved: the oracle could not build the model offline; loraplan must not claim a
  plan that differs from nothing: it either cannot resolve it offline either, or it is listed
  below with the reason.
A missing or empty goldens folder fails the test: the comparison is the point.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loraplan.compiler.compile import check_loaded, compile_plan
from loraplan.schema.load import load_file

DATA = Path(__file__).parents[1] / "data"
CORPUS = DATA / "axolotl-examples"
GOLDENS = Path(os.environ.get("LORAPLAN_AXOLOTL_GOLDENS", DATA / "axolotl-goldens"))


# Configs Axolotl stops on for a cause outside loraplan's domain (training and distributed keys);
# each is checked against Axolotl's message, so a change there shows here.
NOT_LORAPLANS = {
    "archived/falcon/config-7b-qlora.yml": "`early_stopping_patience` requires save_steps and eval_steps",
    "archived/xgen-7b/xgen-7b-8k-qlora.yml": "`early_stopping_patience` requires save_steps and eval_steps",
    "ebft/llama-3b-ebft-strided-fft.yaml": "EBFT strided mode: `torch_compile: true` with `gradient_checkpointing",
    "expert_parallel/qwen3_30ba3b_ep_lora_4gpu.yaml": "warmup_steps\n  Input should be a valid integer",
    # FSDP settings: the fsdp/fsdp_config keys are the "distributed" work's (issue 10 leaves them there)
    "llama-4/scout-vision-qlora-fsdp2-flex.yaml": "FSDP2 does not support `cpu_ram_efficient_loading`",
    # `output_dir:` left empty: Axolotl's schema wants a string there (a training key, not an adapter one)
    "mistral-medium-3_5/qlora-text.yml": "output_dir\n  Input should be a valid string",
    "mistral-medium-3_5/qlora-vision.yml": "output_dir\n  Input should be a valid string",
}


def _goldens() -> list[Path]:
    if not GOLDENS.is_dir():
        return []
    return sorted(p for p in GOLDENS.glob("*.json") if not p.name.startswith("_"))


def test_goldens_are_there():
    assert _goldens(), f"no Axolotl goldens in {GOLDENS}: regenerate them with `make axolotl-goldens`"


def _config_path(golden: dict) -> Path:
    return CORPUS / golden["config"]


def compare(golden: dict) -> list[str]:
    """Differences between loraplan's plan of the golden's config and the golden (empty: equal)."""
    result = load_file(_config_path(golden))
    plan, compiler = check_loaded(result)
    diagnostics = result.diagnostics + compiler
    errors = [d for d in diagnostics if d.severity == "error"]
    status = golden["status"]
    if golden["config"] in NOT_LORAPLANS and status == "axolotl_error":
        said = golden.get("error", {}).get("message", "")
        return [] if NOT_LORAPLANS[golden["config"]] in said else [f"Axolotl's refusal changed: {said[:200]}"]
    if status == "axolotl_error":
        return [] if errors else [f"Axolotl stops ({golden['error']['message'][:200]}); loraplan reports no error"]
    if status != "ok":
        # remote code or a GPTQ checkpoint the oracle cannot build offline: loraplan plans transformers' class
        # on the catalog's config and must say what that leaves out (LP411 remote code, LP402 gptq)
        if plan is None or any(d.code == "LP411" or (d.code == "LP402" and "gptq" in d.message) for d in diagnostics):
            return []
        return [f"oracle could not build it ({golden.get('reason')}); loraplan planned it without saying why"]
    if plan is None or errors:
        return [f"Axolotl builds it; loraplan: {[(d.code, d.message[:160]) for d in errors] or 'no plan'}"]
    out = []
    mods = {i.module: i for i in plan.injections}
    params = {p.module: p for p in plan.parameters}
    for kind, mine, theirs in (("modules", mods, golden["modules"]), ("parameters", params, golden["parameters"])):
        if set(mine) != set(theirs):
            extra, missing = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
            out.append(f"{kind}: loraplan adds {len(extra)} {extra[:3]}, misses {len(missing)} {missing[:3]}")
        for name in sorted(set(mine) & set(theirs)):
            i, g = mine[name], theirs[name]
            if (i.r, i.lora_alpha, pytest.approx(i.scaling)) != (g["r"], g["alpha"], g["scaling"]):
                out.append(f"{name}: r/alpha/scaling {i.r}/{i.lora_alpha}/{i.scaling} vs "
                           f"{g['r']}/{g['alpha']}/{g['scaling']}")
                break
            if g.get("dropout") is not None and pytest.approx(i.dropout) != g["dropout"]:
                out.append(f"{name}: dropout {i.dropout} vs {g['dropout']}")  # Axolotl's ParamWrapper patch
                break
    if sorted(plan.modules_to_save) != sorted(golden.get("modules_to_save", [])):
        out.append(f"modules_to_save {plan.modules_to_save} vs {golden.get('modules_to_save')}")
    if plan.totals.trainable_params != golden["trainable"]:
        out.append(f"trainable {plan.totals.trainable_params:,} vs {golden['trainable']:,}")
    total = plan.totals.total_params
    if result.config.quantization is not None and not golden.get("quantized_on_meta", False):
        plain = result.config.model_copy(update={"quantization": None})
        total = compile_plan(plain, plan_arch(result), source=result.source).totals.total_params
    if total != golden["total"]:
        out.append(f"total {total:,} vs {golden['total']:,}")
    return out


def plan_arch(result):
    from loraplan.compiler.resolve import resolve_architecture

    return resolve_architecture(result.config, None, result.source, allow_torch=False)


@pytest.mark.parametrize("golden_file", _goldens(), ids=lambda p: p.stem)
def test_plan_equals_axolotls(golden_file):
    golden = json.loads(golden_file.read_text())
    assert compare(golden) == []


def test_shipped_tree_differences_are_the_oracles():
    from loraplan.compiler.axolotl_tree import DATA, from_oracle

    trees = GOLDENS / "_trees.json"
    assert trees.is_file(), f"{trees} is missing: regenerate the goldens"
    shipped = json.loads(DATA.read_text())
    assert shipped == from_oracle(json.loads(trees.read_text())), (
        "regenerate: python -m loraplan.compiler.axolotl_tree tests/schema/data/axolotl-goldens/_trees.json")

"""End to end on a CPU in seconds: config -> plan -> apply (verified) -> train -> PEFT adapter.

The model is a tiny random Llama built from a config dict (nothing is downloaded); the adapter
is saved as a plain PEFT adapter and loaded back with `peft.PeftModel.from_pretrained`.

    python examples/apply_plan.py [--out DIR] [--steps N]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import warnings
from pathlib import Path

import loraplan

CONFIG_YAML = """\
base_model: tiny-random-llama
dtype: float32
lora:
  r: 8
  lora_alpha: 16
  target_modules: all-linear
  task_type: CAUSAL_LM
"""

TINY_LLAMA = {
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}


def render_plan(plan) -> str:
    """The plan as `loraplan plan` prints it (a plain listing if the renderer is not installed)."""
    try:
        from loraplan.output.plan_table import render_table
    except ImportError:
        render_table = None
    if render_table is not None:
        return render_table(plan, title="tiny random Llama")
    lines = [f"plan for {plan.architecture} ({plan.model_class}, {plan.architecture_fingerprint})"]
    for inj in [*plan.injections, *plan.parameters]:
        lines.append(f"  {inj.module}  {inj.in_features} -> {inj.out_features}  r={inj.r}  scaling={inj.scaling:g}")
    return "\n".join([*lines, f"trainable: {plan.totals.trainable_params:,}"])


def main(argv: list[str] | None = None) -> int:
    # Offline: PEFT's save_pretrained would otherwise ask the hub about `base_model` (resized embeddings?).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore", message=".*(is_gradient_checkpointing|Could not find a config file).*")
    import peft
    import torch
    import transformers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="where to save the adapter (default: a temp folder)")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="loraplan-adapter-"))

    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "lora.yaml"
        config_path.write_text(CONFIG_YAML)
        config = loraplan.load_config(str(config_path))

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA))
    base = copy.deepcopy(model)  # apply adapts in place; keep a base to reload the adapter onto

    plan = loraplan.compile(config, architecture=model)
    print(render_plan(plan))

    model = loraplan.apply(plan, model)  # raises PlanMismatchError if anything differs from the plan
    print(f"applied and verified: {type(model).__name__}, "
          f"{model.get_nb_trainable_parameters()[0]:,} trainable parameters (plan: {plan.totals.trainable_params:,})")

    ids = torch.randint(1, TINY_LLAMA["vocab_size"], (4, 32), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(args.steps):
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        print(f"step {step:>2}  loss {loss.item():.4f}")

    model.save_pretrained(out)
    model.eval()
    reloaded = peft.PeftModel.from_pretrained(base, out).eval()
    with torch.no_grad():
        same = torch.allclose(model(input_ids=ids).logits, reloaded(input_ids=ids).logits, atol=1e-5)
    print(f"saved a PEFT adapter to {out}; reloaded with peft.PeftModel.from_pretrained: "
          f"{'same outputs' if same else 'OUTPUTS DIFFER'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

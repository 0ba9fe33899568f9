"""QLoRA end to end on a GPU: a tiny model saved to a local folder, loaded back in 4 bits (nf4),
planned from the folder's config.json, applied (verified), trained, saved as a PEFT adapter.

Nothing is downloaded: the "checkpoint" is a random Llama written to a temp folder first, which
`loraplan.load_model` then loads as it would a real one (local folder only, bitsandbytes config
from the YAML, k-bit preparation without PEFT's blanket fp32 upcast).

    python examples/qlora_gpu.py [--steps N] [--cpu]

--cpu runs on bitsandbytes' CPU backend instead (slow; for trying it without a GPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import loraplan

CONFIG_YAML = """\
base_model: {folder}
adapter: qlora
dtype: bfloat16
lora:
  r: 16
  lora_alpha: 32
  target_modules: all-linear
  task_type: CAUSAL_LM
quantization:
  load_in_4bit: true
  bnb_4bit_quant_type: nf4
  bnb_4bit_use_double_quant: true
  bnb_4bit_compute_dtype: bfloat16
  bnb_4bit_quant_storage: uint8
training:
  sequence_len: 256
  micro_batch_size: 4
  gradient_checkpointing: true
"""

TINY_LLAMA = {
    "vocab_size": 1024,
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "architectures": ["LlamaForCausalLM"],
}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore", message=".*(is_gradient_checkpointing|Could not find a config file).*")
    import torch
    import transformers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cpu", action="store_true", help="use bitsandbytes' CPU backend")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA GPU here; run with --cpu to use bitsandbytes' CPU backend", file=sys.stderr)
        return 2
    device = "cpu" if args.cpu else "cuda"

    with tempfile.TemporaryDirectory(prefix="loraplan-qlora-") as tmp:
        folder = Path(tmp) / "tiny-llama"
        torch.manual_seed(0)
        base = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA)).to(torch.bfloat16)
        base.save_pretrained(folder)
        del base
        config_path = Path(tmp) / "qlora.yaml"
        config_path.write_text(CONFIG_YAML.format(folder=folder))

        config = loraplan.load_config(str(config_path))
        plan = loraplan.compile(config)  # from the folder's config.json: no weights read
        try:
            from loraplan.output.plan_table import render_table

            print(render_table(plan, title=str(config_path)))
        except ImportError:  # the plan renderer is optional here: a one-line summary instead
            t = plan.totals
            print(f"plan: {len(plan.injections)} adapted modules, {t.trainable_params:,} trainable of "
                  f"{t.total_params:,} (PEFT's count, 4-bit storage included)")

        model = loraplan.load_model(config, folder, device_map=device if args.cpu else None)
        print(f"loaded {type(model).__name__}: q_proj is {type(model.model.layers[0].self_attn.q_proj).__name__}")
        model = loraplan.apply(plan, model)
        print(f"applied and verified: {model.get_nb_trainable_parameters()[0]:,} trainable parameters")

        ids = torch.randint(1, TINY_LLAMA["vocab_size"], (4, 256), generator=torch.Generator().manual_seed(1))
        ids = ids.to(device)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
        model.train()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for step in range(args.steps):
            opt.zero_grad(set_to_none=True)
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            print(f"step {step:>2}  loss {loss.item():.4f}")
        elapsed = time.perf_counter() - start
        peak = ""
        if device == "cuda":
            peak = f", peak {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB"
            if plan.memory is not None:
                peak += f" (plan's estimate {plan.memory.total_bytes / 2**20:.1f} MiB, CUDA context included)"
        print(f"{args.steps} steps in {elapsed:.1f} s{peak}")

        out = Path(tmp) / "adapter"
        model.save_pretrained(out)
        print(f"saved a PEFT adapter: {sorted(p.name for p in out.iterdir())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

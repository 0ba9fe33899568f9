"""Axolotl's fsdp / fsdp_config / fsdp_version / deepspeed / world_size -> native `distributed:`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from loraplan.compiler.compile import check_loaded
from loraplan.schema.load import load_file, load_text

CORPUS = Path(__file__).parents[1] / "data" / "axolotl-examples"
HEAD = ("base_model: meta-llama/Meta-Llama-3-8B\nadapter: qlora\nload_in_4bit: true\nlora_r: 16\nlora_alpha: 32\n"
        "lora_target_linear: true\n")


def load(text: str, file: str = "a.yml"):
    return load_text(HEAD + textwrap.dedent(text), file)


def test_fsdp1_list_and_prefixed_fsdp_config():
    r = load("""\
        world_size: 4
        fsdp: [full_shard, auto_wrap]
        fsdp_config:
          fsdp_offload_params: true
          fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
        """)
    d = r.config.distributed
    assert (d.world_size, d.engine, d.fsdp.offload_params, d.fsdp.reshard_after_forward) == (4, "fsdp1", True, True)
    assert [x.code for x in r.diagnostics] == []
    # Axolotl's QLoRA default storage (bfloat16) is the model dtype: no LP353
    assert r.config.quantization.bnb_4bit_quant_storage == "bfloat16"


def test_fsdp2_unprefixed_keys_and_world_size_assumed():
    r = load("""\
        fsdp_version: 2
        fsdp_config:
          offload_params: false
          reshard_after_forward: false
          activation_checkpointing: true
        """)
    d = r.config.distributed
    assert (d.engine, d.world_size, d.fsdp.reshard_after_forward) == ("fsdp2", 8, False)
    assert r.config.training.gradient_checkpointing is True  # FSDP's activation checkpointing
    [info] = r.diagnostics
    assert (info.code, info.severity, info.line) == ("LP359", "info", 8) and "assumes 8" in info.message


def test_version_inside_fsdp_config_and_offload_in_the_list():
    r = load("world_size: 2\nfsdp: full_shard auto_wrap offload\nfsdp_config:\n  fsdp_version: 2\n")
    assert (r.config.distributed.engine, r.config.distributed.fsdp.offload_params) == ("fsdp2", True)


def test_fsdp_and_deepspeed_together_is_refused():
    r = load("fsdp: [full_shard]\ndeepspeed: zero3.json\n")
    assert [(x.code, x.severity, x.line) for x in r.diagnostics] == [("LP350", "error", 8)]


def test_deepspeed_json_next_to_the_yaml(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "z.json").write_text(json.dumps(
        {"zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}}, "bf16": {"enabled": True}}))
    (tmp_path / "c.yml").write_text(HEAD + "world_size: 2\ndeepspeed: ds/z.json\n")
    r = load_file(tmp_path / "c.yml")
    ds = r.config.distributed.deepspeed
    assert (ds.zero_stage, ds.offload_param_device, ds.offload_optimizer_device) == (3, "cpu", "none")
    assert [x.code for x in r.diagnostics] == ["LP358"]  # ZeRO-3 + QLoRA + CPU offload: PEFT's caveat


def test_bundled_axolotl_deepspeed_config_is_recognised(tmp_path):
    (tmp_path / "c.yml").write_text(HEAD + "world_size: 2\ndeepspeed: deepspeed_configs/zero2.json\n")
    r = load_file(tmp_path / "c.yml")
    ds = r.config.distributed.deepspeed
    assert (ds.zero_stage, ds.offload_optimizer_device) == (2, "cpu")  # Axolotl's zero2.json offloads
    [note] = r.diagnostics
    assert note.code == "LP359" and "bundled" in note.message


def test_unreadable_deepspeed_config_is_said(tmp_path):
    (tmp_path / "c.yml").write_text(HEAD + "deepspeed: mine.json\n")
    r = load_file(tmp_path / "c.yml")
    assert r.config.distributed is None
    [warn] = r.diagnostics
    assert (warn.code, warn.severity, warn.line) == ("LP359", "warning", 7) and "mine.json" in warn.message


@pytest.mark.parametrize("example", ["llama-3/qlora-fsdp-405b.yaml", "llama-3/qlora-fsdp-70b.yaml",
                                     "jamba/qlora_deepspeed.yaml"])
def test_corpus_examples_plan_per_rank(example):
    result = load_file(CORPUS / example)
    plan, _ = check_loaded(result)
    assert plan is not None and plan.memory.scope == "per rank"


def test_405b_fsdp_offload_example_is_not_one_device():
    """Axolotl's Llama-3.1-405B FSDP + CPU-offload QLoRA: 8 ranks assumed, shards in host memory."""
    plan, _ = check_loaded(load_file(CORPUS / "llama-3/qlora-fsdp-405b.yaml"))
    m = plan.memory
    assert (m.engine, m.world_size) == ("fsdp1", 8)
    assert m.breakdown["weights"] == 0 and m.host_breakdown["weights"] > 20 * 2**30  # ~200 GiB / 8 on the host
    assert m.total_bytes < 80 * 2**30  # fits an 80 GB card per rank, as the example intends


def test_corpus_distributed_findings_are_exactly_these():
    """Every finding of the distributed: rules on the 178 examples, each read by hand.

    LP355: 8-bit base under FSDP (PEFT's FSDP caveats); LP357: paged_adamw_8bit with FSDP + QLoRA
    (PEFT: fails when a checkpoint is saved); LP356: modules_to_save under FSDP (untested by PEFT);
    LP359: the number of ranks assumed, Axolotl's bundled DeepSpeed configs named.
    """
    found = {}
    for p in sorted(CORPUS.rglob("*.y*ml")):
        for d in load_file(p).diagnostics:
            if d.code.startswith("LP35") and d.code != "LP359":
                found[(d.code, str(p.relative_to(CORPUS)))] = (d.severity, d.line)
    assert found == {
        ("LP355", "archived/dbrx/8bit-lora.yaml"): ("warning", 7),
        ("LP355", "glm47-flash/lora_fsdp.yaml"): ("warning", 6),
        ("LP356", "llama-4/do-no-use-fa2/scout-qlora-fsdp1.yaml"): ("info", 31),
        ("LP356", "llama-4/do-no-use-fa2/scout-vision-qlora-fsdp.yaml"): ("info", 40),
        ("LP356", "llama-4/scout-vision-qlora-fsdp2-flex.yaml"): ("info", 39),
        ("LP357", "mistral/mistral-qlora-fsdp.yml"): ("warning", 44),
    }


def test_native_example_plans_what_axolotls_example_plans():
    """examples/llama3-70b-qlora-fsdp.yaml is Axolotl's llama-3/qlora-fsdp-70b.yaml written natively."""
    native, _ = check_loaded(load_file(Path(__file__).parents[3] / "examples" / "llama3-70b-qlora-fsdp.yaml"))
    axolotl, _ = check_loaded(load_file(CORPUS / "llama-3/qlora-fsdp-70b.yaml"))
    assert native.memory == axolotl.memory and native.memory.scope == "per rank"
    assert native.memory.host_bytes > 0 and native.totals == axolotl.totals
    assert [i.module for i in native.injections] == [i.module for i in axolotl.injections]


def test_world_size_from_dp_shard_and_replicate_sizes():
    r = load("fsdp_version: 2\nfsdp_config: {offload_params: false}\ndp_shard_size: 4\ndp_replicate_size: 2\n")
    d = r.config.distributed
    assert (d.world_size, d.shard_size, d.fsdp.dp_shard_size) == (8, 4, 4) and r.diagnostics == []

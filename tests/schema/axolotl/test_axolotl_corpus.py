"""The 178 Axolotl example configs (Axolotl's examples/, Apache-2.0; copied under data/ with their
LICENSE and SOURCE.md): every one loads, and the findings on them are exactly the true ones listed
in docs/axolotl-corpus-findings.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loraplan.schema.load import load_file

CORPUS = Path(__file__).parents[1] / "data" / "axolotl-examples"
FILES = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".yml", ".yaml"))

# (code, file, line) of every finding on the corpus; each one was read and checked by hand.
EXPECTED = {
    ('LP402', 'archived/cerebras/qlora.yml', 42),
    ('LP402', 'archived/falcon/config-7b-lora.yml', 46),
    ('LP402', 'archived/falcon/config-7b-qlora.yml', 76),
    ('LP402', 'archived/gptj/qlora.yml', 39),
    ('LP402', 'archived/xgen-7b/xgen-7b-8k-qlora.yml', 74),
    ('LP402', 'llama-2/gptq-lora.yml', 8),
    ('LP402', 'llama-4/do-no-use-fa2/scout-qlora-single-h100.yaml', 65),
    ('LP402', 'llama-4/do-no-use-fa2/scout-vision-qlora-fsdp.yaml', 57),
    ('LP402', 'llama-4/scout-qlora-flexattn-fsdp2.yaml', 54),
    ('LP402', 'llama-4/scout-qlora-single-h100-flex.yaml', 59),
    ('LP402', 'llama-4/scout-vision-qlora-fsdp2-flex.yaml', 56),
    ('LP402', 'nemotron-h/120b-a12b-qlora.yaml', 62),
    ('LP402', 'nemotron-h/nano-30b-a3b-qlora-cp.yaml', 65),
    ('LP402', 'nemotron-h/nano-30b-a3b-qlora.yaml', 63),
    ('LP402', 'qwen3.5/122b-a10b-moe-qlora-fsdp.yaml', 52),
    ('LP402', 'qwen3.5/122b-a10b-moe-qlora.yaml', 52),
    ('LP402', 'qwen3.5/27b-qlora-fsdp.yaml', 52),
    ('LP402', 'qwen3.5/27b-qlora.yaml', 52),
    ('LP402', 'qwen3.5/35b-a3b-moe-qlora-fsdp.yaml', 52),
    ('LP402', 'qwen3/32b-qlora.yaml', 51),
    ('LP405', 'falcon-h1/falcon-h1-1b-qlora-cp.yaml', 42),
    ('LP409', 'archived/stablelm-2/1.6b/lora.yml', 52),
    ('LP410', 'llama-2/gptq-lora.yml', 9),
    ('LP410', 'llama-2/gptq-lora.yml', 43),
}


def test_corpus_is_complete():
    assert len(FILES) == 178


@pytest.fixture(scope="module")
def results():
    return {str(p.relative_to(CORPUS)): load_file(p) for p in FILES}


def test_every_config_loads_as_axolotl_into_a_config(results):
    for name, result in results.items():
        assert result.dialect == "axolotl", name
        assert result.config is not None, name
        for d in result.diagnostics:
            assert d.file and d.line and d.column, (name, d)


def test_corpus_findings_are_exactly_the_checked_ones(results):
    found = {(d.code, name, d.line) for name, r in results.items() for d in r.diagnostics
             if not d.code.startswith("LP35")}  # distributed: findings, in test_axolotl_distributed.py
    assert found == EXPECTED


def test_corpus_errors_are_axolotls_own_refusals(results):
    # The examples are Axolotl's own; the one error is a config Axolotl 0.19.0 itself refuses
    # (its golden: "`flash_attn_rms_norm` is no longer supported."). Everything else is informational.
    errors = {(d.code, name) for name, r in results.items() for d in r.diagnostics if d.severity == "error"}
    assert errors == {("LP409", "archived/stablelm-2/1.6b/lora.yml")}
    severities = {d.severity for r in results.values() for d in r.diagnostics
                  if d.severity != "error" and not d.code.startswith("LP35")}
    assert severities == {"info"}


def test_corpus_translation_samples(results):
    qlora = results["llama-2/qlora.yml"].config
    lora = qlora.lora
    assert (qlora.adapter, lora.r, lora.lora_alpha, lora.target_modules) == ("qlora", 32, 16, [])
    assert qlora.axolotl.target_linear  # the compiler adds the linear-layer names
    assert qlora.quantization.load_in_4bit and qlora.quantization.bnb_4bit_quant_type == "nf4"
    assert qlora.quantization.bnb_4bit_compute_dtype == "bfloat16"
    assert qlora.training.optimizer == "paged_adamw_32bit" and qlora.training.sequence_len == 4096
    loftq = results["llama-2/loftq.yml"].config
    assert loftq.lora.init_lora_weights == "loftq"
    assert loftq.lora.loftq_config.model_dump() == {"loftq_bits": 4, "loftq_iter": 1}
    gptq = results["llama-2/gptq-lora.yml"].config
    assert gptq.dtype == "float16" and gptq.model_class is None
    pythia = results["archived/pythia/lora.yml"].config
    assert pythia.lora.fan_in_fan_out and pythia.quantization.load_in_8bit
    moe = results["gemma4/26b-a4b-moe-qlora.yaml"].config
    assert moe.lora.target_parameters == ["experts.gate_up_proj", "experts.down_proj"]
    assert moe.quantization.bnb_4bit_use_double_quant is True

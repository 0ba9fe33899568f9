"""config.json files with transformers' special-float tags (`{"__float__": "Infinity"}`), as
transformers writes Mamba-2's and Falcon-H1's `time_step_limit`, are read back as transformers
reads them (they failed with LP512 before)."""

from __future__ import annotations

import json

import pytest
import transformers

from loraplan.compiler.sources.from_config import decode_special_floats, from_config_json, read_config_dict
from loraplan.compiler.sources.from_module import from_module

TINY = {
    "mamba2": dict(hidden_size=32, num_hidden_layers=2, vocab_size=64, state_size=8, head_dim=8, num_heads=8,
                   n_groups=1, expand=2, chunk_size=16),
    "falcon_h1": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=64, mamba_d_ssm=32, mamba_n_heads=4, mamba_d_head=8,
                      mamba_d_state=4, mamba_n_groups=1),
}


@pytest.mark.parametrize("model_type", list(TINY))
def test_config_written_by_transformers_reads_back(model_type, tmp_path):
    cfg = transformers.AutoConfig.for_model(model_type, **TINY[model_type], time_step_limit=(0.0, float("inf")))
    cfg.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["time_step_limit"][1] == {"__float__": "Infinity"}  # what transformers writes
    data, _ = read_config_dict(tmp_path)
    theirs = transformers.AutoConfig.from_pretrained(tmp_path)
    assert list(data["time_step_limit"]) == list(theirs.time_step_limit) == [0.0, float("inf")]
    arch = from_config_json(tmp_path)
    model = transformers.AutoModelForCausalLM.from_config(theirs)
    assert arch.fingerprint == from_module(model).fingerprint


def test_decode_matches_transformers():
    obj = {"a": [{"__float__": "NaN"}, {"__float__": "-Infinity"}], "b": {"__float__": "other"},
           "c": {"__float__": "Infinity", "x": 1}, "d": 1.5}
    ours = decode_special_floats(obj)
    theirs = transformers.PreTrainedConfig._decode_special_floats(obj)
    assert repr(ours) == repr(theirs)

"""The native schema covers the pinned PEFT's whole LoraConfig and transformers' BitsAndBytesConfig.

Walks PEFT's own dataclass fields: a field neither accepted nor refused with a reason fails, so a
PEFT bump shows what is new. Nested sections must have PEFT's keys and defaults, and a config that
sets every accepted field must reach LoraConfig with the same values, as PEFT's own types.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

import pytest
import yaml

from loraplan.compiler.compile import peft_config
from loraplan.runtime.export import _with_peft, _without_peft
from loraplan.schema.config import LoraSection, QuantizationSection
from loraplan.schema.load import load_text
from loraplan.schema.peft_subconfigs import REFUSED_FIELDS, SECTIONS

peft_lora = pytest.importorskip("peft.tuners.lora.config")

# Defaults the native schema states differently, with the reason (same effect in PEFT).
DEFAULT_DIFFERENCES = {
    "loftq_config": "None instead of PEFT's {}: both mean no LoftQ",
    "task_type": "PEFT's default is None as well, typed as its enum",
}

EVERYTHING = {
    "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "revision": "main",
    "trainable_token_indices": {"embed_tokens": [1, 2]}, "layer_replication": [[0, 2], [1, 3]],
    "ensure_weight_tying": True, "use_qalora": True, "qalora_group_size": 8,
    "eva_config": {"rho": 1.5}, "corda_config": {"corda_method": "kpm"},
    "lora_ga_config": {"direction": "ArBr"}, "kasa_config": {"beta": 0.1},
    "use_bdlora": {"target_modules_bd_a": ["q_proj"], "nblocks": 2},
    "monteclora_config": {"num_samples": 4}, "arrow_config": {"top_k": 2}, "velora_config": {"num_groups": 8},
    "alora_invocation_tokens": [5, 6], "megatron_config": {"num_layers": 2}, "megatron_core": "megatron.core",
    "runtime_config": {"ephemeral_gpu_offload": True},
}


def test_every_lora_config_field_is_accepted_or_refused_with_a_reason():
    ours = set(LoraSection.model_fields)
    peft = {f.name for f in dataclasses.fields(peft_lora.LoraConfig)}
    unknown = sorted(peft - ours - set(REFUSED_FIELDS))
    assert not unknown, f"PEFT LoraConfig fields neither supported nor refused (a PEFT bump?): {unknown}"
    assert not ours - peft, f"native lora keys PEFT does not have: {sorted(ours - peft)}"
    assert not set(REFUSED_FIELDS) - peft, "a refused field PEFT no longer has"
    assert all(len(reason) > 10 for reason in REFUSED_FIELDS.values())


def test_defaults_are_peft_defaults():
    for f in dataclasses.fields(peft_lora.LoraConfig):
        if f.name not in LoraSection.model_fields or f.name in DEFAULT_DIFFERENCES:
            continue
        peft_default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        ours = LoraSection.model_fields[f.name].get_default(call_default_factory=True)
        if hasattr(ours, "model_dump"):
            ours, peft_default = ours.model_dump(), dataclasses.asdict(peft_default)
        assert ours == peft_default, f.name


@pytest.mark.parametrize("key", list(SECTIONS))
def test_nested_sections_mirror_peft_dataclasses(key):
    section, peft_name = SECTIONS[key]
    cls = getattr(peft_lora, peft_name)
    init_fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    assert set(section.model_fields) == set(init_fields), peft_name
    peft_defaults = dataclasses.asdict(cls())
    assert section().model_dump() == {k: peft_defaults[k] for k in init_fields}, peft_name


def test_bits_and_bytes_fields_are_all_accepted():
    from transformers import BitsAndBytesConfig

    params = [p for p in inspect.signature(BitsAndBytesConfig.__init__).parameters if p not in ("self", "kwargs")]
    assert set(params) <= set(QuantizationSection.model_fields), set(params) - set(QuantizationSection.model_fields)


def _config(lora):
    result = load_text(yaml.safe_dump({"base_model": "test", "lora": lora}))
    assert result.config is not None, [d.message for d in result.diagnostics]
    return result.config


def test_everything_reaches_peft_as_its_own_types():
    kwargs = peft_config(_config(EVERYTHING))
    assert "runtime_config" not in kwargs  # never saved; runtime/apply.py passes it as LoraRuntimeConfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = peft_lora.LoraConfig(**kwargs)
    for key, (_, peft_name) in SECTIONS.items():
        if key in kwargs and key != "loftq_config":
            value = getattr(cfg, key)
            assert type(value).__name__ == peft_name, key
            for k, v in kwargs[key].items():
                assert getattr(value, k) == v, (key, k)
    assert cfg.trainable_token_indices == {"embed_tokens": [1, 2]}
    assert [tuple(x) for x in cfg.layer_replication] == [(0, 2), (1, 3)]
    assert (cfg.use_qalora, cfg.qalora_group_size, cfg.revision) == (True, 8, "main")
    assert cfg.alora_invocation_tokens == [5, 6] and cfg.megatron_config == {"num_layers": 2}


def test_export_without_peft_equals_peft():
    kwargs = peft_config(_config({k: v for k, v in EVERYTHING.items() if k != "runtime_config"}))
    assert _without_peft(dict(kwargs)) == _with_peft(dict(kwargs))
    for init in ("corda", "eva", "lora_ga"):
        kw = peft_config(_config({"target_modules": ["q"], "init_lora_weights": init, "eva_config": {}}))
        assert _without_peft(dict(kw)) == _with_peft(dict(kw)), init


def test_partial_loftq_config_is_completed_with_peft_defaults():
    """`{loftq_bits: 4}` alone made PEFT's loftq_init fail with KeyError 'loftq_iter' at apply time."""
    kwargs = peft_config(_config({"target_modules": ["q"], "init_lora_weights": "loftq", "loftq_config":
                                  {"loftq_bits": 8}}))
    assert kwargs["loftq_config"] == dataclasses.asdict(peft_lora.LoftQConfig(loftq_bits=8))
    assert set(kwargs["loftq_config"]) >= {"loftq_bits", "loftq_iter"}  # what LoraLayer.loftq_init reads


@pytest.mark.parametrize(("lora", "where"), [
    ({"loftq_config": {"loftq_bits": 3}}, "lora.loftq_config.loftq_bits"),
    ({"loftq_config": {"loftq_iters": 2}}, "lora.loftq_config.loftq_iters"),
    ({"eva_config": {"tau": 1.5}}, "lora.eva_config.tau"),
    ({"use_bdlora": {"target_modules_bd_a": ["q"], "target_modules_bd_b": ["q"]}}, "lora.use_bdlora"),
    ({"kasa_config": {"beta": -1}}, "lora.kasa_config.beta"),
    ({"monteclora_config": {"num_samples": 0}}, "lora.monteclora_config.num_samples"),
    ({"arrow_config": {"router_temperature": 0}}, "lora.arrow_config.router_temperature"),
    ({"lora_ga_config": {"direction": "AB"}}, "lora.lora_ga_config.direction"),
    ({"trainable_token_indices": [1, -1]}, "lora.trainable_token_indices"),
    ({"layer_replication": [[0, 1, 2]]}, "lora.layer_replication"),
    ({"init_lora_weights": "lora-ga"}, "lora.init_lora_weights"),
])
def test_nested_mistakes_are_located(lora, where):
    text = yaml.safe_dump({"base_model": "test", "lora": {"target_modules": ["q"], **lora}})
    result = load_text(text)
    assert result.config is None
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert errors and all(d.line is not None for d in errors)
    assert any(where in d.message for d in errors), [d.message for d in errors]

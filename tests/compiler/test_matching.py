"""matching.py against PEFT's own functions, piece by piece (the pinned PEFT is the oracle)."""

from __future__ import annotations

import copy
import re

import peft
import pytest
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import LoraConfig
from peft.tuners.tuners_utils import (
    _find_minimal_target_modules,
    _maybe_include_all_linear_layers,
    check_target_module_exists,
)
from peft.utils.other import get_pattern_key
from peft_oracle import architecture, hf_factory

from loraplan.compiler import matching as mt
from loraplan.compiler import peft_tables
from loraplan.compiler.moe_conversion import convert
from loraplan.schema.config import LoraSection

SEGMENTS = st.sampled_from(["model", "layers", "h", "0", "1", "12", "self_attn", "q_proj", "v_proj", "mlp", "fc1",
                            "experts", "vision", "block", "q", "proj", ""])
NAMES = st.lists(SEGMENTS, min_size=1, max_size=6).map(".".join)
ITEMS = st.sampled_from(["q_proj", "v_proj", "self_attn.q_proj", "fc1", "proj", "q", "layers.0.mlp.fc1", "0.q_proj",
                         "mlp", "model.layers.1.self_attn.v_proj", "experts"])


def _peft_verdict(config: LoraConfig, key: str) -> str:
    result = check_target_module_exists(config, key)
    if type(result).__name__ == "_ExcludedModule":
        return mt.EXCLUDED
    return mt.YES if result else mt.NO


# --- the tables copied from PEFT / transformers are the installed ones ---------------------------------


def test_versions_pinned():
    assert peft.__version__ == peft_tables.PEFT_VERSION
    assert transformers.__version__ == peft_tables.TRANSFORMERS_VERSION


def test_default_targets_equal_peft():
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as default

    assert default == peft_tables.DEFAULT_TARGET_MODULES


def test_constants_equal_peft():
    from peft.utils import constants as c

    assert peft_tables.INCLUDE_LINEAR_LAYERS_SHORTHAND == c.INCLUDE_LINEAR_LAYERS_SHORTHAND
    assert peft_tables.MIN_TARGET_MODULES_FOR_OPTIMIZATION == c.MIN_TARGET_MODULES_FOR_OPTIMIZATION
    assert list(peft_tables.EMBEDDING_LAYER_NAMES) == c.EMBEDDING_LAYER_NAMES
    assert list(peft_tables.SEQ_CLS_HEAD_NAMES) == c.SEQ_CLS_HEAD_NAMES


def test_moe_tables_equal_peft():
    from peft.utils import transformers_weight_conversion as w
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    assert peft_tables.MOE_TARGET_MODULE_MAPPING == w._MOE_TARGET_MODULE_MAPPING
    assert peft_tables.MOE_FUSED_TARGETS == w._MOE_FUSED_TARGETS
    families = {}
    for model_type in set(CONFIG_MAPPING_NAMES) | set(w._MODEL_TO_CONVERSION_PATTERN):
        family = w._MODEL_TO_CONVERSION_PATTERN.get(model_type)
        if (family in w._MOE_TARGET_MODULE_MAPPING and w._MOE_FUSED_TARGETS.get(family)
                and get_checkpoint_conversion_mapping(model_type) is not None):
            families[model_type] = family
    assert families == peft_tables.MOE_CONVERSION_FAMILY


def test_mamba_table_equal_peft():
    import inspect

    from peft.tuners import tuners_utils

    src = inspect.getsource(tuners_utils._check_lora_target_modules_mamba)
    for name in peft_tables.MAMBA_INCOMPATIBLE_NAMES | peft_tables.MAMBA_MODEL_TYPES:
        assert f'"{name}"' in src


# --- per-name matching ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(ITEMS, min_size=1, max_size=4), NAMES,
       st.one_of(st.none(), st.lists(st.integers(0, 12), min_size=1, max_size=3)),
       st.sampled_from([None, "layers", "h", ["block", "layers"]]),
       st.one_of(st.none(), st.lists(ITEMS, min_size=1, max_size=2)),
       st.one_of(st.none(), st.lists(st.sampled_from(["mlp", "q", "head", "vision"]), min_size=1, max_size=2)))
def test_list_targets_match_like_peft(targets, key, layers, pattern, exclude, to_save):
    if layers is None:
        pattern = None
    kwargs = dict(target_modules=targets, layers_to_transform=layers, layers_pattern=pattern,
                  exclude_modules=exclude, modules_to_save=to_save)
    spec = mt.Spec.from_lora(LoraSection(**kwargs))
    assert mt.check_target_module_exists(spec, key) == _peft_verdict(LoraConfig(**kwargs), key)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([r".*\.q_proj", r"model\..*", r".*layers\.(0|1)\..*", "q_proj", r".*(fc1|mlp)"]), NAMES,
       st.one_of(st.none(), st.just(r".*\.0\..*")))
def test_regex_targets_match_like_peft(regex, key, exclude):
    kwargs = dict(target_modules=regex, exclude_modules=exclude)
    spec = mt.Spec.from_lora(LoraSection(**kwargs))
    assert mt.check_target_module_exists(spec, key) == _peft_verdict(LoraConfig(**kwargs), key)


def test_full_name_skips_layer_filter_as_in_peft():
    kwargs = dict(target_modules=["model.layers.0.q_proj", "v_proj"], layers_to_transform=[1])
    spec = mt.Spec.from_lora(LoraSection(**kwargs))
    assert mt.check_target_module_exists(spec, "model.layers.0.q_proj") == mt.YES
    assert mt.check_target_module_exists(spec, "model.layers.0.v_proj") == mt.NO
    assert mt.check_target_module_exists(spec, "model.layers.1.v_proj") == mt.YES


@pytest.mark.parametrize(
    ("key", "pattern", "expected"),
    [
        ("model.layers.3.mlp.experts.7.w1", None, 3),  # the first number, not the expert index
        ("layers.0.q", None, None),  # needs a segment before the list name
        ("model.vision.layers.2.q", None, 2),
        ("model.h.4.attn.q", "h", 4),
        ("model.vision.layers.2.decoder.layers.5.q", "decoder.layers", 5),
        ("model.layers.1.q", ["h", "layers"], 1),
        ("model.layers.x.q", None, None),
    ],
)
def test_layer_index(key, pattern, expected):
    assert mt.layer_index(key, pattern) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["q_proj", "layers.1.q_proj", r"v_.*", "0.*", "mlp.fc1", r"(q|v)_proj"]),
                min_size=1, max_size=3, unique=True), NAMES)
def test_pattern_key_like_peft(keys, name):
    expected = get_pattern_key(keys, name)
    got = mt.pattern_key(keys, name)
    assert (got if got is not None else name) == expected


@settings(max_examples=200, deadline=None)
@given(st.sets(NAMES.filter(bool), min_size=1, max_size=25), st.sets(NAMES.filter(bool), max_size=25))
def test_minimal_target_modules_like_peft(targets, others):
    others = others - targets
    assert mt.find_minimal_target_modules(set(targets), set(others)) == _find_minimal_target_modules(targets, others)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="ab.", max_size=5), max_size=4), st.text(alphabet="ab.", max_size=8))
def test_dotted_suffix_lookup_equals_endswith(names, key):
    naive = key in names or any(key.endswith(f".{n}") for n in names)
    assert mt.names_match(names, key) == naive


def test_modules_to_save_plain_suffix():
    names = ["model.embed_tokens", "lm_head", "model.score_head", "score"]
    assert mt.modules_to_save_hits(["head"], names) == ["lm_head", "model.score_head"]
    assert mt.modules_to_save_hits(["score"], names) == ["score"]
    assert not mt.is_modules_to_save_excluded(["head"], "lm_head")  # exclusion is dot-bounded
    assert mt.is_modules_to_save_excluded(["lm_head"], "lm_head")
    assert mt.is_modules_to_save_excluded(["mlp"], "model.layers.0.mlp.fc1")


@pytest.mark.parametrize(("model_type", "task"), [("llama", None), ("gpt2", None), ("t5", None),
                                                  ("bert", "SEQ_CLS"), ("bert", None)])
def test_all_linear_like_peft(model_type, task):
    factory = hf_factory(model_type)
    arch = architecture(factory)
    config = LoraConfig(target_modules="all-linear", task_type=task)
    expected = _maybe_include_all_linear_layers(config, factory()).target_modules
    assert mt.all_linear_names(arch, task) == expected


@pytest.mark.parametrize(
    ("target_modules", "target_parameters"),
    [
        ("all-linear", None),
        (["w1", "w2", "w3", "q_proj"], None),
        (["gate", "q_proj"], ["mlp.experts.down_proj"]),
        (r".*\.(q_proj|w1|w3)", None),
        (r".*\.experts\..*", None),
        ("q_proj", None),  # a bare name as a regex resolves to nothing: left for the not-found error
        (None, ["mlp.experts.gate_up_proj"]),
    ],
)
def test_moe_conversion_like_peft(target_modules, target_parameters):
    from peft.utils.transformers_weight_conversion import convert_peft_config_for_transformers

    factory = hf_factory("mixtral")
    arch = architecture(factory)
    kwargs = dict(r=4, lora_alpha=8, target_modules=target_modules, target_parameters=target_parameters)
    config = LoraConfig(**copy.deepcopy(kwargs))
    convert_peft_config_for_transformers(config, model=factory(), conversions=None)
    spec = mt.Spec.from_lora(LoraSection(**kwargs))
    convert(spec, arch)
    assert spec.target_modules == config.target_modules
    assert set(spec.target_parameters or []) == set(config.target_parameters or [])
    assert spec.rank_pattern == config.rank_pattern
    assert spec.alpha_pattern == config.alpha_pattern


def test_moe_partial_pair_refused_like_peft():
    from peft.utils.transformers_weight_conversion import convert_peft_config_for_transformers

    factory = hf_factory("qwen3_moe")
    with pytest.raises(ValueError, match="without also targeting up_proj"):
        convert_peft_config_for_transformers(LoraConfig(target_modules=["gate_proj"]), model=factory(),
                                             conversions=None)
    spec = mt.Spec.from_lora(LoraSection(target_modules=["gate_proj"]))
    conv = convert(spec, architecture(factory))
    assert conv is not None and conv.refused and "up_proj" in conv.refused


def test_no_conversion_for_other_model_types():
    spec = mt.Spec.from_lora(LoraSection(target_modules=["gate_proj"]))
    assert convert(spec, architecture(hf_factory("llama"))) is None
    assert spec.target_modules == {"gate_proj"}


def test_safe_match_invalid_regex_is_no_match():
    assert not mt.safe_match("(", "x")
    with pytest.raises(re.error):
        re.match("(", "x")

"""Any Axolotl-shaped input, however odd its values, gives findings and never a traceback."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loraplan.schema.axolotl.keys import ADAPTER_KEYS, PLANNED_KEYS
from loraplan.schema.diagnostic import Diagnostic
from loraplan.schema.load import load_text

_KEYS = sorted(ADAPTER_KEYS | PLANNED_KEYS | {"lora_alpah", "target_modules", "context_parapllel_size"})
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["lora", "qlora", "auto", "nf4", "int8", "bnb", "torchao", "all-linear", "(", "",
                     "adamw_torch_4bit", "xformers", "bfloat16", "torch.float16", "offload", "yes", "5e-2",
                     "Mxfp4Config", "LlamaForCausalLM", "AutoModelForCausalLM"]),
    st.text(max_size=8),
)
_SUBKEYS = st.one_of(st.sampled_from([*_KEYS, "loftq_config", "loftq_bits", "weight_dtype", "bnb"]),
                     st.integers(0, 3))
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_SUBKEYS, inner, max_size=3)),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, min_size=1, max_size=12))
def test_translation_never_raises(data):
    data.setdefault("lora_r", 8)  # keep the Axolotl dialect detectable
    text = yaml.safe_dump(data, sort_keys=False)
    result = load_text(text, "fuzz.yml", dialect="auto")
    assert result.dialect == "axolotl"
    for d in result.diagnostics:
        assert isinstance(d, Diagnostic) and d.line is not None

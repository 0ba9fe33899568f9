"""`base_model_revision` (native) and Axolotl's `revision_of_model` pin the hub revision read."""

from __future__ import annotations

from loraplan.schema.load import load_text


def test_native_field():
    result = load_text("base_model: a/b\nbase_model_revision: v1.0\nlora:\n  r: 8\n", "c.yaml")
    assert result.config.base_model_revision == "v1.0" and result.diagnostics == []


def test_axolotl_revision_of_model_maps_and_is_not_reported_as_ignored():
    text = "base_model: a/b\nrevision_of_model: 2ee94b0\nadapter: lora\nlora_r: 8\nlora_target_modules: [q_proj]\n"
    result = load_text(text, "ax.yaml")
    assert result.dialect == "axolotl" and result.config.base_model_revision == "2ee94b0"
    assert not [d for d in result.diagnostics if "revision_of_model" in d.message]


def test_wrong_type_is_located():
    result = load_text("base_model: a/b\nbase_model_revision: 3\nlora:\n  r: 8\n", "c.yaml")
    assert [(d.code, d.line) for d in result.diagnostics] == [("LP203", 2)]

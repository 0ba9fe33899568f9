"""Pydantic errors become one located finding per problem, with did-you-mean."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loraplan.schema.load import load_text
from loraplan.schema.pydantic_errors import suggest, to_diagnostics
from loraplan.schema.yaml_source import parse_text


def diags(text: str):
    return load_text(text, "t.yaml").diagnostics


class TestDidYouMean:
    def test_misspelt_key(self):
        (d,) = diags("base_model: m\nlora:\n  lora_alpah: 16\n")
        assert (d.code, d.line, d.column, d.end_column) == ("LP201", 3, 3, 13)
        assert d.message == "unknown key 'lora.lora_alpah'"
        assert d.hint == "did you mean 'lora_alpha'?"

    def test_misspelt_option(self):
        (d,) = diags("base_model: m\nlora: {}\ntraining:\n  optimizer: paged_adamw_8bt\n")
        assert (d.code, d.line, d.column) == ("LP205", 4, 14)
        assert d.hint == "did you mean 'paged_adamw_8bit'?"

    def test_misspelt_init_mode(self):
        (d,) = diags("base_model: m\nlora:\n  init_lora_weights: gausian\n")
        assert d.hint == "did you mean 'gaussian'?"

    def test_key_in_the_wrong_section(self):
        found = diags("base_model: m\nload_in_4bit: true\nlora:\n  r: 8\n  sequence_len: 512\n")
        assert [(d.line, d.column, d.hint) for d in found] == [
            (2, 1, "'load_in_4bit' belongs under 'quantization:'"),
            (5, 3, "'sequence_len' belongs under 'training:'"),
        ]

    def test_top_level_key_written_inside_a_section(self):
        found = diags("lora:\n  base_model: m\n")
        assert ("LP201", 2, 3, "'base_model' belongs at the top level") in [
            (d.code, d.line, d.column, d.hint) for d in found
        ]

    def test_nothing_close_lists_the_known_keys(self):
        (d,) = diags("base_model: m\nlora: {}\ntraining:\n  zzz: 1\n")
        assert d.hint.startswith("known keys: ")
        assert "sequence_len" in d.hint

    def test_suggest(self):
        assert suggest("targt_modules", ["target_modules", "r"]) == "target_modules"
        assert suggest("xyz", ["target_modules"]) is None


class TestUnionsCollapse:
    def test_list_member_with_a_bad_item_gives_one_finding_at_the_item(self):
        found = diags("base_model: m\nlora:\n  target_modules: [q_proj, 5]\n")
        assert [(d.code, d.line, d.column) for d in found] == [("LP203", 3, 28)]
        assert found[0].message == "'lora.target_modules[1]' should be a string, got an integer (5)"

    def test_wrong_type_for_every_member_gives_one_finding_naming_them(self):
        (d,) = diags("base_model: m\nlora:\n  target_modules: 5\n")
        assert d.message == "'lora.target_modules' should be a list or a string, got an integer (5)"

    def test_int_or_list_of_ints(self):
        found = diags("base_model: m\nlora:\n  layers_to_transform: [0, -1, 2, -3]\n")
        assert [(d.code, d.column) for d in found] == [("LP204", 28), ("LP204", 35)]

    def test_regex_error_wins_over_type_error(self):
        (d,) = diags("base_model: m\nlora:\n  target_modules: 'q_proj('\n")
        assert d.code == "LP206"
        assert "invalid regular expression" in d.message

    def test_bool_or_string_init(self):
        (d,) = diags("base_model: m\nlora:\n  init_lora_weights: [true]\n")
        assert d.code == "LP203"
        assert d.message == "'lora.init_lora_weights' should be true or false or a string, got a list"


class TestMissingKeys:
    def test_missing_top_level_key_is_at_the_document_start(self):
        found = diags("\n\n# comment\nbase_model: m\n")
        assert [(d.code, d.line, d.column, d.end_line) for d in found] == [("LP202", 4, 1, None)]
        assert found[0].hint == "add `lora:`"

    def test_missing_nested_key_is_at_its_parent_key(self):
        class Inner(BaseModel):
            model_config = ConfigDict(extra="forbid")
            needed: int = Field(description="required")

        class Outer(BaseModel):
            model_config = ConfigDict(extra="forbid")
            inner: Inner

        doc, _ = parse_text("# x\ninner:\n  other: 1\n", "t.yaml")
        try:
            Outer.model_validate(doc.data)
        except ValidationError as exc:
            found = to_diagnostics(exc, doc, Outer)
        assert sorted((d.code, d.line, d.column, d.message) for d in found) == [
            ("LP201", 3, 3, "unknown key 'inner.other'"),
            ("LP202", 2, 1, "missing required key 'inner.needed'"),
        ]


class TestKeys:
    def test_invalid_regex_key_is_located_at_the_key(self):
        (d,) = diags("base_model: m\nlora:\n  rank_pattern:\n    'q(': 4\n")
        assert (d.code, d.line, d.column) == ("LP206", 4, 5)
        assert "'q('" in d.message

    def test_key_and_value_errors_in_one_mapping_are_all_reported(self):
        found = diags("base_model: m\nlora:\n  rank_pattern:\n    'q(': 4\n    k_proj: 0\n    3: 4\n")
        assert [(d.code, d.line, d.column) for d in found] == [("LP206", 4, 5), ("LP204", 5, 13), ("LP201", 6, 5)]

    def test_non_text_key_at_top_level(self):
        found = diags("base_model: m\nlora: {}\n1: 2\n")
        assert [(d.code, d.line, d.column) for d in found] == [("LP201", 3, 1)]
        assert found[0].message == "key 1 is not a name: keys must be text"


def test_value_is_shown_in_type_errors():
    (d,) = diags("base_model: m\nlora:\n  r: sixteen\n")
    assert d.message == "'lora.r' should be an integer, got a string ('sixteen')"
    assert (d.line, d.column, d.end_line, d.end_column) == (3, 6, 3, 13)


def test_labels_rename_paths_for_dialects():
    doc, _ = parse_text("base_model: m\nlora:\n  r: 0\n", "t.yaml")
    from loraplan.schema.config import Config

    try:
        Config.model_validate(doc.data)
    except ValidationError as exc:
        (d,) = to_diagnostics(exc, doc, Config, {("lora", "r"): "lora_r"})
    assert d.message.startswith("'lora_r' = 0:")

"""Messages a person wants to read (issue 13): the fix, once, where the mistake is."""

from __future__ import annotations

import textwrap

import pytest

from loraplan.schema.load import load_text


def findings(text: str):
    result = load_text(textwrap.dedent(text).lstrip("\n"), "c.yaml")
    return result, [(d.code, d.line, d.column, d.hint) for d in result.diagnostics]


@pytest.mark.parametrize("spelling", ["all_linear", "ALL_LINEAR", "all linear", "alllinear", "all-linear-layers"])
def test_all_linear_misspelt(spelling):
    _, found = findings(f"""
        base_model: m
        lora:
          target_modules: "{spelling}"
    """)
    assert found == [("LP215", 3, 19, "did you mean `all-linear`?")]


@pytest.mark.parametrize("spelling", ["all-linear", "All-Linear"])
def test_all_linear_itself_is_fine(spelling):
    result, found = findings(f"base_model: m\nlora:\n  target_modules: {spelling}\n")
    assert found == [] and result.ok


def test_all_linear_in_a_list():
    _, found = findings("base_model: m\nlora:\n  target_modules: [q_proj, all-linear]\n")
    assert found == [("LP215", 3, 28, "write `target_modules: all-linear` (not in a list)")]


@pytest.mark.parametrize(("value", "base"), [("dora", "lora"), ("DoRA", "lora"), ("qdora", "qlora")])
def test_adapter_dora(value, base):
    _, found = findings(f"base_model: m\nadapter: {value}\nlora:\n  target_modules: [q]\n")
    [(code, line, _col, hint)] = found
    assert (code, line) == ("LP205", 2)
    assert hint == f"DoRA is an option of LoRA: set `adapter: {base}` and `use_dora: true` under `lora:`"


def test_optimizer_family_lists_every_member():
    _, found = findings("base_model: m\nlora:\n  target_modules: [q]\ntraining:\n  optimizer: adamw\n")
    [(_, _, _, hint)] = found
    assert hint.startswith("did you mean one of 'adamw_torch', 'adamw_torch_fused', 'adamw_8bit'")
    assert "'paged_adamw_8bit'" in hint


def test_a_typo_still_gets_the_closest_option():
    _, found = findings("base_model: m\nadapter: qlroa\nlora:\n  target_modules: [q]\n")
    assert found[0][3] == "did you mean 'qlora'?"


@pytest.mark.parametrize(("key", "field"), [("lora_r", "r"), ("lora_target_modules", "target_modules")])
def test_axolotl_flat_key_in_a_native_config(key, field):
    _, found = findings(f"base_model: m\n{key}: 8\nlora:\n  target_modules: [q]\n")
    [(code, line, col, hint)] = found
    assert (code, line, col) == ("LP201", 2, 1)
    want = f"in a native config this is `{field}` under `lora:` (`lora: {{{field}: ...}}`); `{key}` is Axolotl's name"
    assert hint == want


@pytest.mark.parametrize(
    ("text", "where", "hint_start"),
    [
        ("base_model: m\nlora:\n\tr: 8\n", (3, 1), "YAML indents with spaces, never tabs"),
        ("base_model: m\nlora:\n  r: 8\n    target_modules: [q]\n", (4, 19), "check this line's indentation"),
        ("base_model: m\n  lora:\n  r: 8\n", (2, 7), "check this line's indentation"),
        ("base_model: m\nlora:\n    r: 8\n  target_modules: [q]\n", (4, 3), "a line here is indented differently"),
    ],
)
def test_indentation_mistakes_get_a_help_line(text, where, hint_start):
    _, found = findings(text)
    [(code, line, col, hint)] = found
    assert (code, (line, col)) == ("LP101", where)
    assert hint and hint.startswith(hint_start)

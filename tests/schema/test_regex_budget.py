"""User regexes run under a budget: a pathological pattern is a located LP550, never a hang.

The semantics stay `re`'s (PEFT's): the same match objects for ordinary patterns.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from loraplan.schema import regex_budget
from loraplan.schema.load import load_text

SLOW = "(.+)+x"  # exponential in the length of a module name under `re`
NAME = "model.layers.0.self_attn.q_proj.something_longer"


@pytest.fixture
def short_budget(monkeypatch):
    monkeypatch.setattr(regex_budget, "BUDGET_SECONDS", 0.3)


@pytest.mark.parametrize(
    "pattern",
    [r".*\.(q_proj|v_proj)", r"model\.layers\.\d+\.self_attn\.q_proj", "q_proj", r"(?i).*Q_PROJ", r"(.*\.)?(q_proj)$",
     r".*(?<!k)_proj", r"model\.layers\.(0|1)\..*"],
)
def test_semantics_are_re_fullmatch(pattern):
    names = [NAME, "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.k_proj", "lm_head", ""]
    with regex_budget.budget():
        got = [bool(regex_budget.match(pattern, n, full=True)) for n in names]
    assert got == [bool(re.fullmatch(pattern, n)) for n in names]


def test_catastrophic_pattern_is_interrupted(short_budget):
    start = time.perf_counter()
    with pytest.raises(regex_budget.RegexBudgetError) as info, regex_budget.budget():
        regex_budget.match(SLOW, NAME, full=True)
    assert time.perf_counter() - start < 5
    assert info.value.pattern == SLOW


def test_off_the_main_thread_explosive_patterns_are_refused_up_front():
    outcome: list[object] = []

    def work():
        with regex_budget.budget():
            try:
                regex_budget.match(SLOW, NAME, full=True)
                outcome.append("matched")
            except regex_budget.RegexBudgetError as exc:
                outcome.append(exc)
            # an ordinary pattern still matches there
            outcome.append(bool(regex_budget.match(r".*\.q_proj", "a.q_proj", full=True)))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], regex_budget.RegexBudgetError)
    assert outcome[1] is True


def test_guard_restores_the_signal_handler():
    import signal

    before = signal.getsignal(signal.SIGALRM)
    with regex_budget.budget():
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.parametrize("field", ["target_modules", "exclude_modules"])
def test_500_nested_groups_is_a_located_invalid_regex(field):
    pattern = "(" * 500 + "a" + ")" * 500
    extra = "  target_modules: [q_proj]\n" if field == "exclude_modules" else ""
    result = load_text(f"base_model: m\nlora:\n{extra}  {field}: '{pattern}'\n", "c.yaml")
    [d] = [d for d in result.diagnostics if d.code == "LP206"]
    assert "nested too deeply" in d.message
    assert d.line == (4 if extra else 3)


def test_rank_pattern_key_nested_too_deeply_is_located():
    key = "(" * 500 + "a" + ")" * 500
    result = load_text(f"base_model: m\nlora:\n  target_modules: [q_proj]\n  rank_pattern:\n    '{key}': 4\n", "c.yaml")
    assert [d.line for d in result.diagnostics if d.severity == "error"] == [5]


@pytest.mark.parametrize(
    ("field", "where"),
    [("target_modules", "4:19"), ("exclude_modules", "5:20")],
)
def test_validate_reports_lp550_at_the_pattern(run, write, short_budget, field, where):
    text = "base_model: meta-llama/Meta-Llama-3-8B\nlora:\n  r: 8\n"
    text += f"  target_modules: '{SLOW}'\n" if field == "target_modules" else "  target_modules: all-linear\n"
    if field == "exclude_modules":
        text += f"  exclude_modules: '{SLOW}'\n"
    start = time.perf_counter()
    code, out, err = run("validate", write("slow.yaml", text))
    assert time.perf_counter() - start < 20
    assert code == 1, out + err
    assert f"slow.yaml:{where}: LP550 error: regex `{SLOW}` is too slow" in out
    assert err == ""


def test_api_raises_config_error(short_budget):
    import loraplan

    result = load_text(f"base_model: meta-llama/Meta-Llama-3-8B\nlora:\n  target_modules: '{SLOW}'\n")
    assert result.config is not None
    with pytest.raises(loraplan.ConfigError) as info:
        loraplan.compile(result.config)
    assert info.value.diagnostics[0].code == "LP550"


def test_a_worker_thread_does_not_share_the_main_threads_guard():
    """The main thread's SIGALRM cannot interrupt a worker: the worker must still refuse up front."""
    outcome: list[object] = []

    def work():
        try:
            with regex_budget.budget():
                regex_budget.match(SLOW, NAME, full=True)
            outcome.append("matched")
        except regex_budget.RegexBudgetError as exc:
            outcome.append(exc)

    with regex_budget.budget():  # the main thread is guarded meanwhile
        thread = threading.Thread(target=work)
        thread.start()
        thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], regex_budget.RegexBudgetError)


def test_nesting_limit_does_not_depend_on_the_recursion_limit():
    import sys

    old = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(20_000)  # as torch.compile does
        with pytest.raises(re.error, match="nested too deeply"):
            regex_budget.compile_user("(" * 150 + "a" + ")" * 150 + "x")
    finally:
        sys.setrecursionlimit(old)
    assert regex_budget.compile_user("(" * 20 + "a" + ")" * 20).fullmatch("a")
    assert regex_budget._group_depth(r"\(\(\([(][(]((a))") == 2

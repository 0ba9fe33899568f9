"""Property-based: mutated real configs and plans never break the commands (issue 13).

Inputs are the bundled examples, the Axolotl corpus and a plan JSON, mutated as text (hostile
snippets, deleted or repeated slices) and as data (any node replaced by odd values). For each,
through the CLI (`validate` in every format, `plan`, `diff`) and the API (`load_config`,
`compile`):

- no exception other than loraplan's own (the CLI turns any other into "internal error");
- exit codes in {0, 1, 2};
- every finding located inside the file;
- JSON parses strictly (no NaN / Infinity) and SARIF validates against the official 2.1.0 schema;
- each example finishes within a bounded time (hypothesis' deadline).

CI cost is kept small (tens of examples each, ~1 minute for the file); set
LORAPLAN_PROPERTY_EXAMPLES to run more locally.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loraplan
from loraplan import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
AXOLOTL = sorted((ROOT / "tests" / "schema" / "data" / "axolotl-examples").rglob("*.y*ml"))
SARIF_SCHEMA = ROOT / "tests" / "output" / "data" / "sarif-schema-2.1.0.json"
SOURCES = [p for p in EXAMPLES + AXOLOTL[::4] if p.suffix in (".yaml", ".yml")]

N = int(os.environ.get("LORAPLAN_PROPERTY_EXAMPLES", "25"))
PROPERTY = settings(
    max_examples=N,
    deadline=20_000,  # ms per example: a hang (a regex, an unbounded read) fails here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples in every CI run: a failure reproduces
)

HOSTILE = [
    "\t", ": ", "- ", "&a ", "*a", "*nope", "!!set ", "!!omap ", "!custom ", "{", "}", "[", "]", "'", '"', "#",
    "\x1b]0;pwned\x07", "\u2028", "\x85", "\x00", "\ufeff", "1e999", ".inf", ".nan", "-0", "0x10", "~", "null",
    "(.+)+x", "(" * 300, "a" * 300, "lora_r: 8", "lora:\n  r: 0", "<<: *a", "---\n", "...\n", "%YAML 1.1\n",
    "é", "\U0001f600", "\\", "%", "\r", "\n  ", "target_modules: all_linear",
]


def _sarif_validator():
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


SARIF = _sarif_validator()


def strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def check_validate(path: str, text_lines: int) -> None:
    for fmt in ("json", "sarif", "text", "github"):
        code, out, err = run_cli("validate", "--format", fmt, path)
        assert code in (0, 1, 2), (fmt, code)
        assert "internal error" not in err, err
        if fmt == "json":
            report = strict_json(out)
            for d in report["diagnostics"]:
                assert d["file"] == path, d
                assert 1 <= d["line"] <= text_lines + 1 and d["column"] >= 1, d
            assert (code == 1) == (report["summary"]["errors"] > 0), report["summary"]
        elif fmt == "sarif":
            log = strict_json(out)
            errors = sorted(SARIF.iter_errors(log), key=lambda e: list(e.path))
            assert not errors, errors[0].message
            assert log["runs"][0]["invocations"][0]["executionSuccessful"] is True
        elif fmt == "text":
            assert "\x1b" not in out and "\x07" not in out  # no raw control characters reach a terminal
            if code == 1:
                assert "All checks passed" not in out


def check_api(path: str) -> None:
    try:
        config = loraplan.load_config(path)
    except loraplan.LoraplanError:
        return
    from loraplan.compiler.resolve import can_resolve_offline

    if not can_resolve_offline(config):
        return
    with contextlib.suppress(loraplan.LoraplanError):
        loraplan.compile(config)


@cache
def source_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@st.composite
def text_mutations(draw):
    text = source_text(draw(st.sampled_from(SOURCES)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "repeat", "replace-line"]))
        if kind == "insert":
            text = text[:at] + draw(st.sampled_from(HOSTILE) | st.text(max_size=12)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif kind == "repeat":
            text = text[:at] + text[at:at + draw(st.integers(1, 80))] * 2 + text[at:]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines[i] = draw(st.sampled_from(HOSTILE) | st.text(max_size=30))
            text = "\n".join(lines)
    return text


ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HOSTILE), st.text(max_size=20),
    st.lists(st.sampled_from(["q_proj", "all-linear", "(.+)+x", "", "w1", "gate_proj", 0, None]), max_size=5),
    st.dictionaries(st.sampled_from(["r", "q_proj", "lora_alpha", ".*", "(", "x"]), st.integers(-3, 70_000),
                    max_size=3),
)


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, (*prefix, i))


def _replace(data, path, value):
    if not path:
        return value
    data[path[0]] = _replace(data[path[0]], path[1:], value)
    return data


# Where odd values hurt most: numbers that must be finite, regexes, names used as paths.
INTERESTING = {
    ("lora", "lora_alpha"): st.sampled_from([float("inf"), float("nan"), -1.0, 1e308]),
    ("lora", "target_modules"): st.sampled_from(["(.+)+x", "(" * 500 + "a" + ")" * 500, "all_linear", "[", ""]),
    ("lora", "alpha_pattern"): st.just({"q_proj": float("inf")}),
    ("lora", "rank_pattern"): st.just({"(.+)+x": 4}),
    ("base_model",): st.sampled_from(["a" * 300, "/dev/zero", "x/" + "y" * 300, "\x1b]0;t\x07"]),
    ("model_class",): st.sampled_from(["pipeline", "AutoTokenizer", "os.system"]),
    ("quantization", "llm_int8_threshold"): st.just(float("inf")),
}


def _set(data, path, value):
    node = data
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


@st.composite
def data_mutations(draw):
    source = draw(st.sampled_from(SOURCES))
    try:
        data = yaml.safe_load(source_text(source))
    except yaml.YAMLError:
        data = {}
    for _ in range(draw(st.integers(1, 3))):
        if isinstance(data, dict) and draw(st.booleans()):
            path = draw(st.sampled_from(sorted(INTERESTING)))
            _set(data, path, draw(INTERESTING[path]))
            continue
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        data = _replace(data, path, draw(ODD_VALUES))
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _write(folder: str, text: str) -> tuple[str, int]:
    path = os.path.join(folder, "c.yaml")
    with open(path, "w", encoding="utf-8", errors="surrogatepass", newline="") as fh:
        fh.write(text)
    from loraplan.schema.yaml_source import split_lines

    return path, len(split_lines(text))


@pytest.fixture(autouse=True)
def _plain(monkeypatch):
    from loraplan.schema import regex_budget

    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(regex_budget, "BUDGET_SECONDS", 0.25)  # the same check, sooner: CI time


@PROPERTY
@given(text=text_mutations())
def test_mutated_config_text(text):
    with tempfile.TemporaryDirectory() as folder:
        path, lines = _write(folder, text)
        check_validate(path, lines)
        check_api(path)


@PROPERTY
@given(text=data_mutations())
def test_mutated_config_data(text):
    with tempfile.TemporaryDirectory() as folder:
        path, lines = _write(folder, text)
        check_validate(path, lines)
        code, out, err = run_cli("plan", "--format", "json", "--arch", "meta-llama/Llama-3.2-1B", path)
        assert code in (0, 1, 2) and "internal error" not in err, err
        strict_json(out)


@pytest.fixture(scope="module")
def plan_data():
    code, out, _ = run_cli("plan", "--format", "json", str(ROOT / "examples" / "llama3.2-1b-lora.yaml"))
    assert code == 0
    return strict_json(out)


@PROPERTY
@given(data=st.data())
def test_mutated_plan_json_in_diff(plan_data, data):
    mutated = json.loads(json.dumps(plan_data))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(mutated) if len(p) <= 3]
        path = data.draw(st.sampled_from(paths))
        if path and data.draw(st.booleans()):
            parent = mutated
            for key in path[:-1]:
                parent = parent[key]
            del parent[path[-1]]
        else:
            mutated = _replace(mutated, path, data.draw(ODD_VALUES))
    with tempfile.TemporaryDirectory() as folder:
        good, bad = os.path.join(folder, "a.json"), os.path.join(folder, "b.json")
        Path(good).write_text(json.dumps(plan_data), encoding="utf-8")
        Path(bad).write_text(json.dumps(mutated), encoding="utf-8")  # NaN / Infinity written as JSON would
        for fmt in ("text", "json"):
            code, out, err = run_cli("diff", "--format", fmt, good, bad)
            assert code in (0, 1, 2), code
            assert "internal error" not in err, err
            if fmt == "json" and code in (0, 1):
                strict_json(out)

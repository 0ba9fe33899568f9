"""The hub, config.json only, end to end against a local stand-in (tests/hub_standin.py).

`plan` and `validate --online` fetch through huggingface_hub into the HF cache set for the test;
each failure (404, 401, gated, revision, no config.json, timeout, no network, 5xx, offline,
remote code) has its own code and message; only config.json is ever requested.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from hub_standin import HubStandIn, Repo

from loraplan.compiler.catalog import CONFIGS_DIR

TINY_FILE = CONFIGS_DIR / "tiny" / "trl-internal-testing--tiny-Qwen2ForCausalLM-2.5.json"
TINY = json.loads(TINY_FILE.read_text())
# The same published config as save_pretrained writes it (with _name_or_path): not byte-equal to the
# catalog's copy, so it is built by transformers, as any model outside the catalog is.
SAVED = json.dumps({**TINY, "_name_or_path": "acme/private-model"}, indent=2).encode()
REMOTE = json.dumps({"model_type": "qwen", "architectures": ["QWenLMHeadModel"],
                     "auto_map": {"AutoConfig": "configuration_qwen.QWenConfig"}}).encode()
TYPO = "base_model: {base}\n{extra}lora:\n  r: 8\n  target_modules: [q_proj, v_porj]\n"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    standin = HubStandIn(repos={
        "acme/private-model": Repo({"config.json": SAVED, "model.safetensors": b"weights"}, private=True),
        "acme/open-model": Repo({"config.json": SAVED, "model.safetensors": b"weights"}, revisions=("main", "v1.0")),
        "acme/gated-model": Repo({"config.json": SAVED}, gated=True),
        "acme/catalog-copy": Repo({"config.json": TINY_FILE.read_bytes()}),
        "acme/no-config": Repo({"README.md": b"# no model here"}),
        "acme/remote-code": Repo({"config.json": REMOTE}),
        "acme/slow": Repo({"config.json": SAVED}, delay_s=3.0),
        "acme/down": Repo({"config.json": SAVED}, status=503),
    })
    url = standin.start()
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield standin
    standin.stop()


def plan_json(run, write, base, extra=""):
    code, out, err = run("plan", write("c.yaml", TYPO.format(base=base, extra=extra)), "--format", "json")
    return code, json.loads(out), err


def codes(data):
    return [(d["code"], d["severity"]) for d in data["diagnostics"] if d["severity"] != "info"]


def test_plan_fetches_config_json_only_and_checks_targets(hub, run, write, plain_env):
    hub.token = "hf_right"
    write("unused", "")
    code, data, _ = plan_json(run, write, "acme/open-model")
    assert code == 1 and ("LP502", "error") in codes(data)  # the misspelt target is caught
    src = data["architecture_source"]
    assert src["kind"] == "hub" and src["revision"] == "main" and len(src["commit"]) == 40
    assert hub.requested_files() == {"config.json"}  # never weights
    assert Path(src["path"]).is_file() and "hf-cache" in src["path"]  # the standard cache layout
    assert {m for m, _, _ in hub.requests} == {"HEAD", "GET"}


def test_fetched_config_is_then_found_in_the_cache_offline(hub, run, write, plain_env, monkeypatch):
    plan_json(run, write, "acme/open-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(hub.requests)
    code, data, _ = plan_json(run, write, "acme/open-model")
    assert code == 1 and data["architecture_source"]["kind"] == "hf-cache" and len(hub.requests) == before


def test_revision_pin_native_and_axolotl(hub, run, write, plain_env):
    code, data, _ = plan_json(run, write, "acme/open-model", "base_model_revision: v1.0\n")
    assert data["architecture_source"]["revision"] == "v1.0"
    assert any("/resolve/v1.0/config.json" in p for _, p, _ in hub.requests)
    axolotl = "base_model: acme/open-model\nrevision_of_model: v1.0\nadapter: lora\nlora_r: 8\n" \
              "lora_target_modules: [q_proj]\n"
    code, out, _ = run("plan", write("ax.yaml", axolotl), "--format", "json")
    assert json.loads(out)["architecture_source"]["revision"] == "v1.0"
    code, data, _ = plan_json(run, write, "acme/open-model", "base_model_revision: v9\n")
    assert code == 1 and codes(data) == [("LP523", "error")] and "no revision 'v9'" in data["diagnostics"][0]["message"]
    assert data["diagnostics"][0]["line"] == 1  # located at base_model


def test_catalog_content_needs_no_torch_and_says_so(hub, run, write, plain_env):
    code, data, _ = plan_json(run, write, "acme/catalog-copy")
    assert code == 1 and ("LP502", "error") in codes(data)
    src = data["architecture_source"]
    assert src["kind"] == "hub" and src["same_as_catalog"] == "trl-internal-testing/tiny-Qwen2ForCausalLM-2.5"


@pytest.mark.parametrize(
    ("repo", "token", "code", "words"),
    [
        ("acme/nobody", None, "LP521", "repository not found"),
        ("acme/private-model", None, "LP521", "401 Unauthorized"),
        ("acme/private-model", "hf_wrong", "LP521", "401 Unauthorized"),
        ("acme/gated-model", None, "LP522", "gated model without a token"),
        ("acme/gated-model", "hf_wrong", "LP522", "not been granted access"),
        ("acme/no-config", None, "LP527", "has no config.json"),
        ("acme/down", None, "LP536", "HTTP 503"),
        ("acme/remote-code", None, "LP526", "remote code"),
    ],
)
def test_each_failure_has_its_own_message(hub, run, write, plain_env, monkeypatch, repo, token, code, words):
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    rc, data, _ = plan_json(run, write, repo)
    assert rc == 1 and codes(data)[0] == (code, "error")
    d = data["diagnostics"][0]
    assert words in d["message"] and d["line"] == 1 and d["hint"]
    assert "model.safetensors" not in hub.requested_files()
    if code == "LP526":
        assert "--arch" in d["hint"]  # what to pass instead


def test_token_opens_private_and_gated(hub, run, write, plain_env, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", hub.token)
    for repo in ("acme/private-model", "acme/gated-model"):
        rc, data, _ = plan_json(run, write, repo)
        assert rc == 1 and ("LP502", "error") in codes(data) and data["architecture_source"]["kind"] == "hub"
    assert all(auth == f"Bearer {hub.token}" for _, _, auth in hub.requests)


def test_timeout_is_bounded(hub, run, write, plain_env):
    start = time.monotonic()
    rc, data, _ = plan_json(run, write, "acme/slow")
    assert rc == 1 and codes(data) == [("LP524", "error")]
    assert "did not answer within 1 s" in data["diagnostics"][0]["message"]
    assert time.monotonic() - start < 15


def test_no_network(hub, run, write, plain_env, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    rc, data, _ = plan_json(run, write, "acme/open-model")
    assert rc == 1 and codes(data) == [("LP524", "error")] and "cannot reach" in data["diagnostics"][0]["message"]


def test_offline_env_is_honoured(hub, run, write, plain_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, data, _ = plan_json(run, write, "acme/open-model")
    assert rc == 1 and codes(data) == [("LP501", "error")]
    assert "HF_HUB_OFFLINE is set" in data["diagnostics"][0]["message"]
    assert hub.requests == []
    from loraplan.compiler.sources.hub import fetch_config
    from loraplan.errors import ResolveError

    with pytest.raises(ResolveError) as info:
        fetch_config("acme/open-model")
    assert info.value.diagnostics[0].code == "LP525"


def test_validate_is_offline_unless_asked(hub, run, write, plain_env):
    path = write("c.yaml", TYPO.format(base="acme/open-model", extra=""))
    rc, out, _ = run("validate", path)
    assert rc == 0 and "LP520 warning: targets not checked" in out and hub.requests == []
    rc, out, _ = run("validate", "--online", path)
    assert rc == 1 and "LP502 error: target `v_porj` matches no module" in out
    assert hub.requested_files() == {"config.json"}
    rc, out, _ = run("validate", path)  # now cached: checked offline too
    assert rc == 1 and "LP502" in out and "LP520" not in out

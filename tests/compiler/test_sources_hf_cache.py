"""find_cached_config on a fake Hugging Face cache: layout, refs, env precedence, no network."""

from __future__ import annotations

import os
import time

import pytest

from loraplan.compiler.sources.hf_cache import find_cached_config, hub_cache_dirs, is_hub_id


def make_repo(cache, hub_id: str, commits: list[str], main: str | None = None):
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    for i, commit in enumerate(commits):
        snap = repo / "snapshots" / commit
        snap.mkdir(parents=True)
        cfg = snap / "config.json"
        cfg.write_text(f'{{"model_type": "llama", "commit": "{commit}"}}')
        stamp = time.time() - 100 + i
        os.utime(cfg, (stamp, stamp))
    if main:
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(main + "\n")
    return repo


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_refs_main_snapshot_wins(clean_env, tmp_path):
    cache = tmp_path / "hub"
    make_repo(cache, "org/model", ["aaa", "bbb"], main="aaa")
    clean_env.setenv("HF_HUB_CACHE", str(cache))
    assert find_cached_config("org/model") == cache / "models--org--model" / "snapshots" / "aaa" / "config.json"


def test_newest_snapshot_without_ref(clean_env, tmp_path):
    cache = tmp_path / "hub"
    make_repo(cache, "org/model", ["old", "new"])
    clean_env.setenv("HF_HUB_CACHE", str(cache))
    assert find_cached_config("org/model").parent.name == "new"


def test_hf_home_and_default_locations(clean_env, tmp_path):
    make_repo(tmp_path / "hfhome" / "hub", "a/b", ["c1"], main="c1")
    clean_env.setenv("HF_HOME", str(tmp_path / "hfhome"))
    assert find_cached_config("a/b") is not None
    clean_env.delenv("HF_HOME")
    assert find_cached_config("a/b") is None
    make_repo(tmp_path / "home" / ".cache" / "huggingface" / "hub", "a/b", ["c2"])
    assert find_cached_config("a/b").parent.name == "c2"


def test_hub_cache_beats_hf_home(clean_env, tmp_path):
    clean_env.setenv("HF_HUB_CACHE", str(tmp_path / "x"))
    clean_env.setenv("HF_HOME", str(tmp_path / "y"))
    dirs = hub_cache_dirs()
    assert dirs[0] == tmp_path / "x" and dirs[1] == tmp_path / "y" / "hub"


def test_case_insensitive_repo_folder(clean_env, tmp_path):
    make_repo(tmp_path / "hub", "Org/Model", ["c"], main="c")
    clean_env.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_cached_config("org/model") is not None


def test_missing_and_non_hub_ids(clean_env, tmp_path):
    clean_env.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_cached_config("org/absent") is None
    assert not is_hub_id("./local/folder") and not is_hub_id("../x/y") and not is_hub_id("plain")
    assert is_hub_id("meta-llama/Llama-3.2-1B")
    assert find_cached_config("../etc/passwd") is None


def test_snapshot_without_config_is_skipped(clean_env, tmp_path):
    repo = tmp_path / "hub" / "models--o--m"
    (repo / "snapshots" / "c").mkdir(parents=True)
    clean_env.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_cached_config("o/m") is None


def test_huggingface_hub_not_imported(clean_env, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from loraplan.compiler.sources.hf_cache import find_cached_config;"
        "find_cached_config('a/b'); print('huggingface_hub' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""Runtime tests run offline: PEFT's save_pretrained would otherwise ask the hub about base_model."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

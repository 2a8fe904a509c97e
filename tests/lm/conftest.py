"""Fixtures shared by the GPT-2 tests: offline always, and one tiny default model per session."""

from __future__ import annotations

import pytest

from prefopt_toy.lm.models import default_model


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Every GPT-2 test runs with the Hugging Face Hub switched off (nothing is downloaded)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """The model cache of the test session: the tiny default model is trained into it once."""
    return tmp_path_factory.mktemp("prefopt_cache")


@pytest.fixture(scope="session")
def tiny_lm(tiny_cache):
    """``(model, tokenizer)``: the tiny default model (seed 0), shared by every test that asks.

    Shared across test files: a test that trains copies it first (``copy.deepcopy``), and tests
    that must leave it untouched check that they did.
    """
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        return default_model("tiny", cache_dir=tiny_cache, seed=0)
    finally:
        mp.undo()

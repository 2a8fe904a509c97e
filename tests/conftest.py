"""Shared test configuration.

transformers announces most deprecations through its logger (``logger.warning_once``), not through
``warnings.warn``, so ``filterwarnings = error`` in pyproject.toml does not see them: the user sees
them in the terminal all the same. Every test fails if transformers, accelerate, TRL or huggingface_hub
logs a deprecation while it runs (transformers 5.25's ``past_key_values`` -> ``cache`` rename was
one such message).
"""

from __future__ import annotations

import logging

import pytest

_LIBRARIES = ("transformers", "accelerate", "trl", "huggingface_hub")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "deprecat" in record.getMessage().lower():
            self.records.append(record)


@pytest.fixture(autouse=True)
def _no_library_deprecation_logged():
    handler = _Collect()
    loggers = [logging.getLogger(name) for name in _LIBRARIES]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    if handler.records:
        lines = [f"{r.name}: {r.getMessage()}" for r in handler.records]
        pytest.fail("a library logged a deprecation (the user would see it):\n" + "\n".join(lines))

"""The DPO step benchmark compares like with like: ``benchmarks/bench_lm_dpo_step.py``'s two setups
(the project's ``Trainer`` and TRL 1.13's ``DPOTrainer``, TRL imported only in tests/benchmarks)
see the same token ids and compute the same loss, at initialisation and after one AdamW step.

TRL is the independent computation here: its own tokenisation, collation, reference pass, loss and
optimiser loop. The check is the benchmark's own ``check_same_step`` (it raises ``SystemExit`` when
the setups disagree); the test also asserts the comparison is not trivial (a loss that is not
``log 2`` and that moves after the step).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("trl")
pytest.importorskip("datasets")

pytestmark = [
    # TRL 1.13 reads transformers' deprecated gradient-checkpointing names (transformers 5.23 renamed
    # them activation_checkpointing); the benchmark turns checkpointing off, the warning remains.
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_lm_dpo_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_lm_dpo_step", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_setups_compute_the_same_loss(bench):
    tokenizer = bench.gpt2_tokenizer()
    dataset = bench.fruit_pairs(4, 2)
    res = bench.check_same_step("tiny", torch.float32, "cpu", tokenizer, dataset, tol=1e-5)
    assert res["d_init"] <= 1e-5 and res["d_after1"] <= 1e-5
    assert abs(res["first_step_ours"] - res["init_ours"]) <= 1e-5
    assert abs(res["init_ours"] - math.log(2)) > 1e-4  # the reference differs from the policy
    assert res["init_ours"] - res["after1_ours"] > 1e-4  # the step changed the weights


def test_fruit_pairs_are_preference_examples(bench):
    pairs = bench.fruit_pairs(6, 3)
    assert len(pairs) == 6
    for ex in pairs:
        assert set(ex) == {"prompt", "chosen", "rejected"} and ex["chosen"] != ex["rejected"]
        assert ex["chosen"].count(".") == 3  # three sentences, each ending with a full stop

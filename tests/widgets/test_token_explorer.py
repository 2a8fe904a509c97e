"""The token explorer (notebook 09): its pure compute function and its widget, set as a browser would.

Oracles: ``tests/_token_oracle.py`` (sequences enumerated by recursion, probabilities as products
along a path, KLs as loops over the vocabulary, sharing no code with the package), the length
game written out with itertools and a logistic, and sequence-level DPO's Gibbs closed form
``mu_seq exp(strength * class / beta) / Z`` in numpy (the length game is exactly Bradley-Terry in
``strength * class``, so the fitted reward is that score up to a constant).
"""

from __future__ import annotations

import itertools
import math

import ipywidgets
import numpy as np
import pytest
import torch
from _token_oracle import enumerate_sequences, kl_rows, sequence_logp, visit_probability
from matplotlib.backends.backend_agg import FigureCanvasAgg

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.widgets.token_explorer import (
    length_game,
    prefix_labels,
    sequence_labels,
    token_explorer_data,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TREE = pt.TokenTree(3, 3)
MU = np.full((7, 3), 1.0 / 3.0)


def length_class(seq, max_length):
    return min(len(seq), max_length) - 1  # EOS counted; truncated sequences share the last class


def oracle_game(sequences, max_length, strength):
    c = [length_class(s, max_length) for s in sequences]
    n = len(sequences)
    return np.array(
        [[1.0 / (1.0 + math.exp(-strength * (c[i] - c[j]))) for j in range(n)] for i in range(n)]
    )


def gibbs(weights, scores, beta):
    w = np.asarray(weights) * np.exp((np.asarray(scores) - np.max(scores)) / beta)
    return w / w.sum()


def test_length_game_and_labels_match_an_itertools_enumeration():
    strength = 0.75
    sequences = list(TREE.sequences)
    assert sorted(sequences) == sorted(enumerate_sequences(3, 3))  # the same 15 sequences
    np.testing.assert_allclose(
        length_game(TREE, strength).numpy(), oracle_game(sequences, 3, strength), atol=1e-15
    )
    letters = {0: "a", 1: "b", 2: "|"}
    assert sequence_labels(TREE) == ["".join(letters[t] for t in s) for s in sequences]
    content = [p for k in range(3) for p in itertools.product("ab", repeat=k)]
    assert prefix_labels(TREE) == ["root", *("".join(p) for p in content[1:])]


@pytest.mark.parametrize("method", ["dpo", "tdpo1", "tdpo2"])
def test_compute_matches_enumeration_of_its_end_table(method):
    data = token_explorer_data(TREE, MU, method, beta=0.5, alpha=0.5, strength=1.0, steps=60)
    table = data["log_table"].numpy()  # the end point; everything else must follow from it
    prefixes, sequences = list(TREE.prefixes), list(TREE.sequences)
    log_mu = np.log(MU)
    p = np.array([math.exp(sequence_logp(table, prefixes, s)) for s in sequences])
    q = np.array([math.exp(sequence_logp(log_mu, prefixes, s)) for s in sequences])
    np.testing.assert_allclose(data["final"].numpy(), p, atol=1e-13)
    np.testing.assert_allclose(data["mu_seq"].numpy(), q, atol=1e-15)
    forward, reverse = kl_rows(log_mu, table), kl_rows(table, log_mu)
    visits = np.array([visit_probability(table, prefixes, s) for s in prefixes])
    np.testing.assert_allclose(data["prefix_kl"].numpy(), forward, atol=1e-13)
    np.testing.assert_allclose(data["prefix_kl_reverse"].numpy(), reverse, atol=1e-13)
    np.testing.assert_allclose(data["visits"].numpy(), visits, atol=1e-13)
    probs = np.exp(table)
    np.testing.assert_allclose(data["prefix_entropy"].numpy(), -(probs * table).sum(1), atol=1e-13)
    seqkl = [sum(forward[prefixes.index(s[:t])] for t in range(len(s))) for s in sequences]
    np.testing.assert_allclose(data["seqkl"].numpy(), seqkl, atol=1e-13)
    s = data["summary"]
    # the chain rule: the enumerated sequence KL is the visit-weighted sum of per-prefix KLs
    seq_kl = float((p * np.log(p / q)).sum())
    assert s["KL(pi_seq||mu_seq)"] == pytest.approx(seq_kl, abs=1e-13)
    assert float(data["weighted_kl"].sum()) == pytest.approx(seq_kl, abs=1e-13)
    assert s["E_pi SeqKL"] == pytest.approx(float(p @ np.array(seqkl)), abs=1e-13)
    assert s["root KL(mu||pi)"] == pytest.approx(forward[0], abs=1e-13)
    assert s["pi(stop at root)"] == pytest.approx(p[sequences.index((2,))], abs=1e-13)
    assert s["entropy"] == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-13)
    by_length = [p[[length_class(x, 3) == k for x in sequences]].sum() for k in range(3)]
    np.testing.assert_allclose([s[f"mass by length {k}"] for k in (1, 2, 3)], by_length)
    classes = [length_class(x, 3) for x in sequences]
    np.testing.assert_allclose(data["dpo_optimum"].numpy(), gibbs(q, classes, 0.5), atol=1e-12)


def test_dpo_reaches_the_closed_form_and_tdpo2_keeps_more_mass_on_stopping():
    # README's table (scores 0, 1, 2 by length, beta = 0.5): TDPO2 keeps ~5x DPO's mass on
    # stopping at once and about half its sequence KL
    dpo = token_explorer_data(TREE, MU, "dpo", beta=0.5, strength=1.0, steps=400)
    q = dpo["mu_seq"].numpy()
    classes = [length_class(x, 3) for x in TREE.sequences]
    np.testing.assert_allclose(dpo["final"].numpy(), gibbs(q, classes, 0.5), atol=1e-6)
    tdpo2 = token_explorer_data(TREE, MU, "tdpo2", beta=0.5, strength=1.0, steps=400)
    assert tdpo2["summary"]["pi(stop at root)"] > 3 * dpo["summary"]["pi(stop at root)"]
    assert tdpo2["summary"]["KL(pi_seq||mu_seq)"] < 0.6 * dpo["summary"]["KL(pi_seq||mu_seq)"]


def test_tdpo2_is_dpo_at_alpha_zero():
    # alpha = 0: TDPO2's margin is DPO's, on any tree
    a0 = token_explorer_data(TREE, MU, "tdpo2", beta=0.5, alpha=0.0, strength=1.0, steps=40)
    d = token_explorer_data(TREE, MU, "dpo", beta=0.5, strength=1.0, steps=40)
    torch.testing.assert_close(a0["final"], d["final"], rtol=0, atol=1e-13)


def test_widget_follows_its_controls():
    h = widgets.token_explorer(TREE, method="dpo", beta=0.5, strength=1.0, steps=20)
    assert isinstance(h.widget, ipywidgets.Box)
    assert isinstance(h.figure.canvas, FigureCanvasAgg)
    assert bytes(h.image.value).startswith(PNG_MAGIC)
    assert set(h.controls) == {"method", "beta", "alpha", "strength"}
    for name, control in h.controls.items():
        assert control.description == name
        assert f"prefopt-{name}" in control._dom_classes
        if isinstance(control, (ipywidgets.FloatSlider, ipywidgets.FloatLogSlider)):
            assert control.continuous_update is False
    png = bytes(h.image.value)
    h.controls["method"].value = "tdpo2"
    h.controls["alpha"].value = 1.0
    h.controls["strength"].value = -2.0
    assert bytes(h.image.value) != png
    expected = token_explorer_data(TREE, MU, "tdpo2", beta=0.5, alpha=1.0, strength=-2.0, steps=20)
    torch.testing.assert_close(h.data["final"], expected["final"], rtol=0, atol=1e-13)
    heights = [b.get_height() for b in h.figure.axes[0].patches if b.get_gid() == "bars:final"]
    np.testing.assert_allclose(heights, h.data["final"].numpy())
    ticks = [ln for ln in h.figure.axes[0].get_lines() if ln.get_gid() == "dpo_optimum"][0]
    np.testing.assert_allclose(ticks.get_ydata()[0::3], h.data["dpo_optimum"].numpy())
    kl_heights = [
        b.get_height() for b in h.figure.axes[1].patches if b.get_gid() == "bars:prefix_kl"
    ]
    np.testing.assert_allclose(kl_heights, h.data["prefix_kl"].numpy())
    assert "α = 1" in h._artists["title"].get_text()
    assert h.figure.axes[1].get_ylim()[1] >= float(h.data["prefix_kl"].max())  # no bar clipped
    assert h.status.value == ""


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="method must be one of"):
        widgets.token_explorer(TREE, method="ipo")
    with pytest.raises(ValueError, match="tree must be a TokenTree"):
        widgets.token_explorer("tree")
    with pytest.raises(ValueError, match="at most 40 sequences"):
        widgets.token_explorer(pt.TokenTree(3, 5))
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 2\]"):
        widgets.token_explorer(TREE, alpha=3.0)
    with pytest.raises(ValueError, match="beta must lie in"):
        widgets.token_explorer(TREE, beta=50.0)
    with pytest.raises(ValueError, match="strength must be finite"):
        length_game(TREE, float("nan"))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        token_explorer_data(TREE, MU, steps=0)
    with pytest.raises(ValueError, match="mu must"):
        token_explorer_data(TREE, np.full((7, 2), 0.5))

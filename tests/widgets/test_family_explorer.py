"""The family explorer (notebook 08): set a control as the browser would, read the handle back.

Oracles: the Gibbs form of DPO's optimum and R-DPO's length-penalised tilt in numpy, and the
library's own algorithms called directly with the settings the docstring promises.
"""

from __future__ import annotations

import ipywidgets
import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.simplex import barycentric_to_cartesian
from prefopt_toy.widgets.family_explorer import FAMILY_METHODS, parse_lengths

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCORES = np.array([1.0, 0.5, 0.0])
MU = np.array([0.5, 0.3, 0.2])
STEPS = 200


def gibbs(mu, reward, beta):
    w = np.asarray(mu) * np.exp((np.asarray(reward) - np.max(reward)) / beta)
    return w / w.sum()


def line(fig, gid):
    found = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(found) == 1, f"expected one line {gid!r}, found {len(found)}"
    return found[0]


def xy(pi):
    return barycentric_to_cartesian(torch.as_tensor(np.asarray(pi), dtype=torch.float64)).numpy()


@pytest.fixture
def h():
    return widgets.family_explorer(pt.bradley_terry(SCORES), MU, method="dpo", steps=STEPS)


def test_handle_follows_the_contract(h):
    assert isinstance(h.widget, ipywidgets.Box)
    assert isinstance(h.figure.canvas, FigureCanvasAgg)
    assert bytes(h.image.value).startswith(PNG_MAGIC)
    assert "prefopt-figure" in h.image._dom_classes
    assert h.status.value == ""
    assert set(h.controls) == {"method", "beta", "gamma", "alpha", "lengths"}
    for name, control in h.controls.items():
        assert control.description == name
        assert f"prefopt-{name}" in control._dom_classes
        if isinstance(control, (ipywidgets.FloatSlider, ipywidgets.FloatLogSlider)):
            assert control.continuous_update is False
    assert list(h.controls["method"].options) == list(FAMILY_METHODS)
    assert h._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"]


def test_beta_moves_dpo_to_the_gibbs_closed_form(h):
    png = bytes(h.image.value)
    h.controls["beta"].value = 2.0
    assert h.data["beta"] == 2.0
    np.testing.assert_allclose(h.data["dpo_optimum"], gibbs(MU, SCORES, 2.0), atol=1e-12)
    np.testing.assert_allclose(h.data["final"], gibbs(MU, SCORES, 2.0), atol=1e-6)
    np.testing.assert_allclose(h.data["fixed_point"], gibbs(MU, SCORES, 2.0), atol=1e-12)
    np.testing.assert_allclose(
        line(h.figure, "dpo_optimum").get_xydata()[0], xy(gibbs(MU, SCORES, 2.0)), atol=1e-12
    )
    np.testing.assert_allclose(line(h.figure, "end").get_xydata()[0], xy(h.data["final"]))
    np.testing.assert_allclose(line(h.figure, "path").get_xydata(), xy(h.data["path"]))
    assert bytes(h.image.value) != png


def test_rdpo_marks_the_length_penalised_optimum(h):
    h.controls["method"].value = "rdpo"
    h.controls["alpha"].value = 0.5
    h.controls["lengths"].value = "1, 1.5, 4"
    expected = gibbs(MU, SCORES - 0.5 * np.array([1.0, 1.5, 4.0]), 1.0)
    np.testing.assert_allclose(h.data["fixed_point"], expected, atol=1e-12)
    np.testing.assert_allclose(h.data["final"], expected, atol=1e-6)
    marker = line(h.figure, "fixed_point")
    assert marker.get_visible()
    np.testing.assert_allclose(marker.get_xydata()[0], xy(expected), atol=1e-12)
    assert "1.5" in h._artists["lengths"].get_text()


def test_methods_without_a_fixed_point_hide_the_marker(h):
    h.controls["method"].value = "kto"
    assert h.data["fixed_point"] is None
    assert not line(h.figure, "fixed_point").get_visible()
    expected = pt.ALGORITHMS["kto"](pt.bradley_terry(SCORES), MU, steps=STEPS, beta=1.0).final
    torch.testing.assert_close(h.data["final"], expected, rtol=0, atol=1e-12)


def test_simpo_reads_gamma_and_lengths_and_orpo_reads_beta_as_lam(h):
    P = pt.bradley_terry(SCORES)
    h.controls["method"].value = "simpo"
    h.controls["gamma"].value = 1.0
    L = [1.0, 2.0, 3.0]
    expected = pt.ALGORITHMS["simpo"](P, MU, steps=STEPS, beta=1.0, gamma=1.0, lengths=L).final
    torch.testing.assert_close(h.data["final"], expected, rtol=0, atol=1e-12)
    h.controls["gamma"].value = 0.0
    assert float(h.data["final"][0]) < float(expected[0])  # a larger gamma widens the margins
    h.controls["method"].value = "orpo"
    h.controls["beta"].value = 0.5
    expected = pt.ALGORITHMS["orpo"](P, MU, steps=STEPS, lam=0.5).final
    torch.testing.assert_close(h.data["final"], expected, rtol=0, atol=1e-12)
    assert "λ = 0.5" in h._artists["title"].get_text()


def test_staged_methods_share_the_steps(h):
    h.controls["method"].value = "sdpo"
    np.testing.assert_allclose(h.data["fixed_point"], gibbs(MU, SCORES, 0.5), atol=1e-12)
    np.testing.assert_allclose(h.data["final"], gibbs(MU, SCORES, 0.5), atol=1e-5)


def test_bad_lengths_keep_the_drawing_and_say_why(h):
    before = h.data["final"].clone()
    png = bytes(h.image.value)
    h.controls["lengths"].value = "1, two, 3"
    assert "lengths must be three numbers" in h.status.value
    torch.testing.assert_close(h.data["final"], before)
    assert bytes(h.image.value) == png
    h.controls["lengths"].value = "1, 2, 0"
    assert "finite numbers &gt; 0" in h.status.value
    h.controls["lengths"].value = "2 2 2"
    assert h.status.value == ""


def test_parse_lengths_and_bad_arguments():
    torch.testing.assert_close(
        parse_lengths("1; 2, 3"), torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="three"):
        parse_lengths("1, 2")
    with pytest.raises(ValueError, match="method"):
        widgets.family_explorer(pt.bradley_terry(SCORES), MU, method="nash_md")
    with pytest.raises(ValueError, match="3 x 3"):
        widgets.family_explorer(pt.bradley_terry([1.0, 0.0]), [0.5, 0.5])

"""The unlearning explorer (notebook 10): its pure compute function and its widget, set as a browser would.

Oracle: a numpy gradient-descent loop with hand-derived gradients, sharing no code with the
package. For a softmax row, d log pi(y) / d theta = e_y - pi. Gradient ascent's forget term
``log pi(y_f)`` has gradient ``e_f - pi``; NPO's ``-(2/beta) log sigma(-beta (log pi(y_f) -
log mu(y_f)))`` has ``2 sigma(beta r) (e_f - pi)``; the retain NLL ``-log pi(y_r)`` has
``-(e_r - pi)``; each averaged over its questions. With a shared bias psi (theta[c] = phi[c] +
psi) the bias's gradient is the sum over questions of the rows' gradients.
"""

from __future__ import annotations

import ipywidgets
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import prefopt_toy as pt
from prefopt_toy import widgets
from prefopt_toy.unlearning import teaching_task
from prefopt_toy.widgets.unlearning_explorer import unlearning_explorer_data, unlearning_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TASK = teaching_task()
MU = np.array(
    [
        [0.60, 0.20, 0.08, 0.05, 0.05, 0.02],
        [0.70, 0.06, 0.10, 0.08, 0.04, 0.02],
        [0.55, 0.12, 0.12, 0.12, 0.06, 0.03],
        [0.75, 0.08, 0.06, 0.05, 0.04, 0.02],
        [0.65, 0.10, 0.10, 0.08, 0.05, 0.02],
        [0.70, 0.09, 0.08, 0.06, 0.05, 0.02],
    ]
)  # teaching_task's reference, copied from its docstring's table
FORGET, RETAIN, TRUE = [0, 1, 2], [3, 4, 5], 0  # every true answer is answer 0


def softmax(x):
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def numpy_run(method, steps, beta=0.1, retain_weight=0.0, shared_bias=False, lr=1.0):
    """Gradient descent on the (C, K) logits (and a shared (K,) bias); returns pi per step."""
    phi, psi = np.log(MU), np.zeros(MU.shape[1])
    out = [softmax(phi + psi)]
    for _ in range(steps):
        pi = softmax(phi + psi)
        g = np.zeros_like(phi)
        for c in FORGET:
            e = np.eye(MU.shape[1])[TRUE]
            scale = 1.0
            if method == "npo":
                r = np.log(pi[c, TRUE]) - np.log(MU[c, TRUE])
                scale = 2.0 / (1.0 + np.exp(-beta * r))
            g[c] = scale * (e - pi[c]) / len(FORGET)
        for c in RETAIN:
            g[c] = -retain_weight * (np.eye(MU.shape[1])[TRUE] - pi[c]) / len(RETAIN)
        phi = phi - lr * g
        if shared_bias:
            psi = psi - lr * g.sum(0)
        out.append(softmax(phi + psi))
    return np.array(out)


def kl_rows(p, q):
    return (p * np.log(p / q)).sum(-1)


@pytest.mark.parametrize(
    ("method", "retain_weight", "shared_bias"),
    [("ga", 0.0, False), ("ga", 1.0, True), ("npo", 0.5, True)],
)
def test_compute_matches_a_numpy_gradient_loop(method, retain_weight, shared_bias):
    data = unlearning_explorer_data(
        TASK, method, beta=0.3, retain_weight=retain_weight, shared_bias=shared_bias, steps=30
    )
    pis = numpy_run(method, 30, beta=0.3, retain_weight=retain_weight, shared_bias=shared_bias)
    np.testing.assert_allclose(data["probs"], pis[:, FORGET[0]], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(data["forget_prob"], pis[:, FORGET, TRUE].mean(-1), rtol=1e-9)
    retain_kl = np.array([kl_rows(p[RETAIN], MU[RETAIN]).mean() for p in pis])
    np.testing.assert_allclose(data["retain_kl"], retain_kl, rtol=1e-8, atol=1e-14)
    end = pis[-1, FORGET]
    s = data["summary"]
    assert s["alternates"] == pytest.approx(end[:, 1:4].sum(-1).mean(), rel=1e-9)
    assert s["refusal"] == pytest.approx(end[:, 4].mean(), rel=1e-9)
    assert s["implausible"] == pytest.approx(end[:, 5].mean(), rel=1e-9)
    assert s["retain KL"] == pytest.approx(retain_kl[-1], rel=1e-8, abs=1e-14)
    if not shared_bias and retain_weight == 0:  # the retain questions never move
        np.testing.assert_allclose(data["retain_kl"], 0.0, atol=1e-14)


def test_ga_log_ratio_increment_and_altpo_keeps_mu_inside_the_alternates():
    ga = unlearning_explorer_data(TASK, "ga", steps=1)
    p0, p1 = ga["probs"]
    # one GA step: log pi(y)/pi(y') grows by lr (pi(y) - pi(y')) / F among the remaining answers
    got = np.log(p1[1] / p1[2]) - np.log(p0[1] / p0[2])
    assert got == pytest.approx((p0[1] - p0[2]) / len(FORGET), rel=1e-10)
    alt = unlearning_explorer_data(TASK, "altpo", beta=0.1, steps=40)
    ratios = alt["probs"][:, 1:4] / alt["probs"][:, 1:4].sum(-1, keepdims=True)
    np.testing.assert_allclose(ratios, np.tile(MU[0, 1:4] / MU[0, 1:4].sum(), (41, 1)), rtol=1e-11)


def test_summary_matches_numpy_at_the_end_of_a_ga_run():
    s = unlearning_summary(pt.unlearn(TASK, method="ga", steps=20, retain_weight=1.0))
    pis = numpy_run("ga", 20, retain_weight=1.0)[-1]
    f = pis[FORGET]
    alts = f[:, 1:4]
    cond = np.zeros_like(MU[FORGET])
    cond[:, 1:4] = MU[FORGET, 1:4] / MU[FORGET, 1:4].sum(-1, keepdims=True)
    expected = {
        "forget answer": f[:, TRUE].mean(),
        "alternates": alts.sum(-1).mean(),
        "refusal": f[:, 4].mean(),
        "implausible": f[:, 5].mean(),
        "top alternate's share": (alts.max(-1) / alts.sum(-1)).mean(),
        "TV to mu(.|alternates)": (0.5 * np.abs(f - cond).sum(-1)).mean(),
        "retain log-likelihood": np.log(pis[RETAIN, TRUE]).mean(),
        "retain KL": kl_rows(pis[RETAIN], MU[RETAIN]).mean(),
    }
    assert s.keys() == expected.keys()
    for key, value in expected.items():
        assert s[key] == pytest.approx(value, rel=1e-9, abs=1e-14), key


def test_widget_follows_its_controls_and_draws_its_data():
    h = widgets.unlearning_explorer(TASK, method="ga", shared_bias=False, steps=25)
    assert isinstance(h.widget, ipywidgets.Box)
    assert isinstance(h.figure.canvas, FigureCanvasAgg)
    assert bytes(h.image.value).startswith(PNG_MAGIC)
    assert set(h.controls) == {"method", "beta", "retain_weight", "shared_bias", "steps"}
    for name, control in h.controls.items():
        assert control.description == name
        assert f"prefopt-{name}" in control._dom_classes
    png = bytes(h.image.value)
    h.controls["method"].value = "npo"
    h.controls["retain_weight"].value = 0.5
    h.controls["shared_bias"].value = True
    h.controls["beta"].value = 0.3
    assert bytes(h.image.value) != png
    assert h.status.value == ""
    pis = numpy_run("npo", 25, beta=0.3, retain_weight=0.5, shared_bias=True)
    np.testing.assert_allclose(h.data["probs"], pis[:, 0], rtol=1e-9, atol=1e-14)
    ax, ax_c = h.figure.axes
    lines = [ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith("answer:")]
    assert len(lines) == 6
    for k, line in enumerate(lines):
        np.testing.assert_allclose(line.get_ydata(), pis[:, 0, k], rtol=1e-9, atol=1e-14)
    curve = [ln for ln in ax_c.get_lines() if ln.get_gid() == "curve"][0]
    np.testing.assert_allclose(curve.get_ydata(), pis[:, FORGET, TRUE].mean(-1), rtol=1e-9)
    retain_kl = np.array([kl_rows(p[RETAIN], MU[RETAIN]).mean() for p in pis])
    np.testing.assert_allclose(curve.get_xdata(), retain_kl, rtol=1e-8, atol=1e-14)
    assert ax_c.get_xlim()[1] >= retain_kl.max()  # no point clipped
    assert "β = 0.3" in h._artists["title"].get_text()
    h.controls["steps"].value = 50  # a new x-range: the figure is rebuilt
    assert len(h.figure.axes[0].get_lines()[0].get_xdata()) == 51


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="task must be an UnlearningTask"):
        widgets.unlearning_explorer("task")
    with pytest.raises(ValueError, match="method must be one of"):
        widgets.unlearning_explorer(TASK, method="dpo")
    with pytest.raises(ValueError, match=r"retain_weight must lie in \[0, 2\]"):
        widgets.unlearning_explorer(TASK, retain_weight=3.0)
    with pytest.raises(ValueError, match="beta must lie in"):
        widgets.unlearning_explorer(TASK, beta=5.0)
    with pytest.raises(ValueError, match="steps must be one of"):
        widgets.unlearning_explorer(TASK, steps=7)
    with pytest.raises(ValueError, match="shared_bias must be True or False"):
        widgets.unlearning_explorer(TASK, shared_bias=1)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        unlearning_explorer_data(TASK, steps=0)
    with pytest.raises(ValueError, match="question must lie in"):
        unlearning_explorer_data(TASK, question=3)

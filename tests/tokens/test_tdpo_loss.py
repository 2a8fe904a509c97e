"""tdpo_loss: a hand-computed example of the official formula, DPO where the KLs agree, dtypes, bad input.

Official formula (Vance0124/Token-level-Direct-Preference-Optimization @ 2a736ec,
``trainers.py::tdpo_loss``): ``logits = u - (kl_l - kl_w)`` (TDPO1) or
``u - alpha * (kl_l - kl_w.detach())`` (TDPO2); ``loss = -logsigmoid(beta * logits)``.
"""

from __future__ import annotations

import pytest
import torch

from prefopt_toy.losses import dpo_loss, tdpo_loss

# u = 1.0, SeqKL(y_w) = 0.2, SeqKL(y_l) = 0.6, beta = 0.1, alpha = 0.5:
#   TDPO1: z = 1 - (0.6 - 0.2) = 0.6,        beta z = 0.06, loss = log(1 + e^-0.06) = 0.6635971130761409
#   TDPO2: z = 1 - 0.5 (0.6 - 0.2) = 0.8,    beta z = 0.08, loss = log(1 + e^-0.08) = 0.6539469673175899
#   d loss / d(beta z) = -sigma(-beta z): 0.4850044983805899 (TDPO1), 0.48001065984441826 (TDPO2)


def _inputs():
    return tuple(
        torch.tensor([x], dtype=torch.float64, requires_grad=True) for x in (1.0, 0.2, 0.6)
    )


def test_hand_computed_tdpo1():
    u, kl_w, kl_l = _inputs()
    loss = tdpo_loss(u, kl_w, kl_l, beta=0.1, variant="tdpo1")
    assert float(loss.detach()) == pytest.approx(0.6635971130761409, abs=1e-15)
    loss.sum().backward()
    s = 0.4850044983805899
    assert float(u.grad) == pytest.approx(-0.1 * s, abs=1e-15)  # pushes the margin up
    assert float(kl_l.grad) == pytest.approx(0.1 * s, abs=1e-15)  # pushes SeqKL(y_l) down
    assert float(kl_w.grad) == pytest.approx(-0.1 * s, abs=1e-15)  # pushes SeqKL(y_w) up


def test_hand_computed_tdpo2_and_its_stop_gradient():
    u, kl_w, kl_l = _inputs()
    loss = tdpo_loss(u, kl_w, kl_l, beta=0.1, alpha=0.5)  # the default variant is TDPO2
    assert float(loss.detach()) == pytest.approx(0.6539469673175899, abs=1e-15)
    loss.sum().backward()
    s = 0.48001065984441826
    assert float(u.grad) == pytest.approx(-0.1 * s, abs=1e-15)
    assert float(kl_l.grad) == pytest.approx(0.5 * 0.1 * s, abs=1e-15)
    # sg[SeqKL(y_w)]: its value counts, no gradient reaches it (autograd leaves it None)
    assert kl_w.grad is None or float(kl_w.grad) == 0.0


def test_tdpo1_is_dpo_where_the_sequential_kls_are_equal():
    u = torch.linspace(-50.0, 50.0, 11, dtype=torch.float64)
    kl = torch.linspace(0.0, 3.0, 11, dtype=torch.float64)
    torch.testing.assert_close(
        tdpo_loss(u, kl, kl, beta=0.3, variant="tdpo1"), dpo_loss(u, beta=0.3), rtol=0, atol=1e-15
    )
    # TDPO2 is DPO only at alpha = 0 ...
    torch.testing.assert_close(
        tdpo_loss(u, kl, 2 * kl, beta=0.3, alpha=0.0), dpo_loss(u, beta=0.3), rtol=0, atol=1e-15
    )
    # ... and differs otherwise
    assert not torch.allclose(tdpo_loss(u, kl, 2 * kl, beta=0.3), dpo_loss(u, beta=0.3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("variant", ["tdpo1", "tdpo2"])
def test_finite_for_large_inputs_in_every_dtype(dtype, variant):
    u = torch.tensor([[-1e4, 1e4], [0.0, 3.0]], dtype=dtype, requires_grad=True)
    kl_w = torch.tensor([[0.0, 50.0], [1e3, 0.0]], dtype=dtype, requires_grad=True)
    kl_l = torch.tensor(
        [[1e3, 0.0], [0.0, 60000.0 if dtype == torch.float16 else 1e4]], dtype=dtype
    )
    loss = tdpo_loss(u, kl_w, kl_l, beta=1.0, variant=variant)
    assert loss.shape == (2, 2)
    assert loss.dtype == (torch.float32 if dtype == torch.float16 else dtype)
    assert bool(torch.isfinite(loss).all())
    loss.sum().backward()
    assert u.grad.dtype == dtype and bool(torch.isfinite(u.grad).all())
    # at u = -1e4 the loss is ~ beta * 1e4 (linear, not overflowing)
    assert float(loss.detach()[0, 0]) > 1e4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": 0.0}, "beta must be > 0"),
        ({"beta": 0.1, "alpha": -0.1}, "alpha must be >= 0"),
        ({"beta": 0.1, "variant": "tdpo3"}, "variant must be one of"),
        ({"beta": float("nan")}, "beta must be finite"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tdpo_loss([1.0], [0.0], [0.0], **kwargs)


def test_bad_tensors():
    with pytest.raises(ValueError, match="seqkl_rejected must have the shape of margin"):
        tdpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3, 1), beta=0.1)
    with pytest.raises(ValueError, match="seqkl_chosen must be finite"):
        tdpo_loss([0.0], [float("inf")], [0.0], beta=0.1)

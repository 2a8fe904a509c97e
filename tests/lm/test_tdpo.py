"""TDPO's GPT-2 statistics (``logprobs.tdpo_statistics_from_logits``) and loss (``objectives.tdpo_preference_loss``).

Oracles: a per-position loop in numpy float64 (an explicit softmax per position, the KL written as
a sum over the vocabulary); a two-row, vocabulary-3 example worked out by hand from the official
formula (values and TDPO2's stop-gradient); finite differences (``torch.autograd.gradcheck``); for
memory, a dispatch-mode recorder of every tensor the forward and backward passes allocate and a
saved-tensors hook of every tensor autograd keeps, with the naive formula as a positive control.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd.gradcheck import GradcheckError
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from prefopt_toy.lm.logprobs import tdpo_statistics_from_logits
from prefopt_toy.lm.objectives import TDPO_METRIC_NAMES, tdpo_preference_loss

V = 7
EOS = 6


def _batch(dtype=torch.float64, seed=0):
    """4 rows: right padding (NaN logits on padding), left padding, an EOS-ended completion."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, EOS, (4, 6), generator=g)
    ids[0, 4], ids[2, 5], ids[3, 3] = EOS, EOS, EOS  # completions ending in a labelled EOS
    comp = torch.tensor(
        [
            [0, 0, 1, 1, 1, 0],  # prompt 2, completion 2 + EOS, 1 padding
            [0, 1, 0, 0, 0, 0],  # a one-token completion, then 4 padding
            [0, 0, 0, 1, 1, 1],  # left padding (positions 0-1), prompt 2-3... see attention
            [0, 1, 1, 1, 0, 0],
        ]
    )
    z = 3 * torch.randn(4, 6, V, generator=g, dtype=torch.float64)
    r = 3 * torch.randn(4, 6, V, generator=g, dtype=torch.float64)
    z[0, 4:], z[1, 1:], z[3, 3:] = math.nan, math.nan, math.nan  # states never scored
    return z.to(dtype), r.to(dtype), ids, comp


def _loop(z, r, ids, comp):
    """(logratio, seqkl, policy_logps, ref_logps) per row, one position at a time, numpy float64."""
    z, r = z.double().numpy(), r.double().numpy()
    out = np.zeros((ids.shape[0], 4))
    for b in range(ids.shape[0]):
        for t in range(1, ids.shape[1]):
            if not comp[b, t]:
                continue
            zt, rt = z[b, t - 1], r[b, t - 1]  # the state before token t
            pi = np.exp(zt - zt.max()) / np.exp(zt - zt.max()).sum()
            mu = np.exp(rt - rt.max()) / np.exp(rt - rt.max()).sum()
            y = int(ids[b, t])
            kl = sum(mu[v] * (math.log(mu[v]) - math.log(pi[v])) for v in range(len(mu)))
            out[b] += [math.log(pi[y]) - math.log(mu[y]), kl, math.log(pi[y]), math.log(mu[y])]
    return out


@pytest.mark.parametrize("chunk_elements", [1, 3 * V, 10**6])
def test_statistics_match_a_per_position_loop(chunk_elements):
    z, r, ids, comp = _batch()
    stats = tdpo_statistics_from_logits(z, r, ids, comp, chunk_elements=chunk_elements)
    got = torch.stack(list(stats), dim=1).numpy()
    np.testing.assert_allclose(got, _loop(z, r, ids, comp), rtol=1e-12, atol=1e-12)
    assert stats.seqkl.dtype == torch.float64 and bool((stats.seqkl > 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_logits_are_computed_in_float64_and_returned_in_float32(dtype):
    z, r, ids, comp = _batch(dtype)
    stats = tdpo_statistics_from_logits(z, r, ids, comp)
    assert stats.seqkl.dtype == torch.float32
    got = torch.stack(list(stats), dim=1).double().numpy()
    np.testing.assert_allclose(got, _loop(z, r, ids, comp), rtol=1e-6, atol=1e-6)
    # equal logits: exactly zero log-ratio and KL (one formula for both models)
    same = tdpo_statistics_from_logits(z, z.clone(), ids, comp)
    assert not same.logratio.any() and not same.seqkl.any()


# Hand example (vocabulary {0: a, 1: b, 2: EOS}; reference uniform, mu = 1/3 everywhere).
#   chosen   x a EOS : pi(.|x) = (1/2, 1/4, 1/4), pi(.|x a) = (1/4, 1/4, 1/2)
#   rejected x b     : pi(.|x) = (1/8, 1/8, 3/4)           (then one padding position)
# logratio_w = log(1/2) + log(1/2) - 2 log(1/3) = 2 log(3/2);  logratio_l = log(1/8 / (1/3)) = log(3/8)
# u = 2 log(3/2) - log(3/8) = log 6.
# KL(mu || (1/2, 1/4, 1/4)) = -log 3 - (1/3)(log 1/2 + 2 log 1/4) = (5/3) log 2 - log 3 (the same
# for any permutation), so SeqKL_w = (10/3) log 2 - 2 log 3;
# SeqKL_l = -log 3 - (1/3)(2 log 1/8 + log 3/4) = (8/3) log 2 - (4/3) log 3.
# SeqKL_l - SeqKL_w = (2/3) log(3/2).
# TDPO1: L1 = -log sigma(beta (log 6 - (2/3) log(3/2)));
# TDPO2: L2 = -log sigma(beta (log 6 - alpha (2/3) log(3/2))).
# Gradients in the policy logits z at a state with probabilities p (dL/dz_scalar = -beta sigma(-beta z)):
#   d log pi(y) / dz = e_y - p,   d KL(mu || pi) / dz = p - mu.
#   TDPO2, chosen state x : s2 (e_a - p) = s2 (1/2, -1/4, -1/4)          (sg: no (p - mu) term)
#          chosen state xa: s2 (e_EOS - p) = s2 (-1/4, -1/4, 1/2)
#          rejected x     : s2 [-(e_b - p) - alpha (p - mu)] = s2 (11, -37, 26) / 48  (alpha = 1/2)
#   TDPO1, chosen state x : s1 [(e_a - p) + (p - mu)] = s1 (2/3, -1/3, -1/3)
#          rejected x     : s1 [-(e_b - p) - (p - mu)] = s1 (1/3, -2/3, 1/3)
def _hand_batch():
    nan = math.nan
    z = torch.tensor(
        [
            [[1 / 2, 1 / 4, 1 / 4], [1 / 4, 1 / 4, 1 / 2], [nan, nan, nan]],
            [[1 / 8, 1 / 8, 3 / 4], [nan, nan, nan], [nan, nan, nan]],
        ],
        dtype=torch.float64,
    ).log()
    ids = torch.tensor([[0, 0, 2], [0, 1, 2]])
    comp = torch.tensor([[0, 1, 1], [0, 1, 0]])
    return z.requires_grad_(), torch.zeros(2, 3, 3, dtype=torch.float64), ids, comp


def _hand_loss(variant, beta=0.5, alpha=0.5):
    z, r, ids, comp = _hand_batch()
    s = tdpo_statistics_from_logits(z, r, ids, comp)
    losses, metrics = tdpo_preference_loss(
        s.policy_logps[:1],
        s.policy_logps[1:],
        s.ref_logps[:1],
        s.ref_logps[1:],
        s.seqkl[:1],
        s.seqkl[1:],
        beta=beta,
        alpha=alpha,
        variant=variant,
    )
    losses.sum().backward()
    return s, losses, metrics, z.grad


def test_hand_example_values_and_tdpo2_stop_gradient():
    beta, alpha = 0.5, 0.5
    l2, l3 = math.log(2), math.log(3)
    s, loss2, metrics, g2 = _hand_loss("tdpo2", beta, alpha)
    assert s.logratio.tolist() == pytest.approx([2 * math.log(1.5), math.log(3 / 8)], abs=1e-14)
    assert s.seqkl.tolist() == pytest.approx(
        [10 / 3 * l2 - 2 * l3, 8 / 3 * l2 - 4 / 3 * l3], abs=1e-14
    )
    d = 2 / 3 * math.log(1.5)  # SeqKL_l - SeqKL_w

    def nls(x):
        return math.log1p(math.exp(-x))  # -log sigma(x)

    z1, z2 = math.log(6) - d, math.log(6) - alpha * d
    assert float(loss2.detach()) == pytest.approx(nls(beta * z2), abs=1e-14)
    s2 = -beta / (1 + math.exp(beta * z2))
    expected2 = [
        [[s2 / 2, -s2 / 4, -s2 / 4], [-s2 / 4, -s2 / 4, s2 / 2], [0, 0, 0]],
        [[s2 * 11 / 48, -s2 * 37 / 48, s2 * 26 / 48], [0, 0, 0], [0, 0, 0]],
    ]
    np.testing.assert_allclose(g2.numpy(), expected2, rtol=1e-12, atol=1e-15)
    assert float(metrics["seqkl/chosen"]) == pytest.approx(10 / 3 * l2 - 2 * l3, abs=1e-14)
    assert set(metrics) == set(TDPO_METRIC_NAMES)

    _, loss1, _, g1 = _hand_loss("tdpo1", beta, alpha)
    assert float(loss1.detach()) == pytest.approx(nls(beta * z1), abs=1e-14)
    s1 = -beta / (1 + math.exp(beta * z1))
    np.testing.assert_allclose(
        g1[0, 0].numpy(), [2 * s1 / 3, -s1 / 3, -s1 / 3], rtol=1e-12, atol=1e-15
    )
    np.testing.assert_allclose(g1[1, 0].numpy(), [s1 / 3, -2 * s1 / 3, s1 / 3], rtol=1e-12)


def test_statistics_gradient_matches_finite_differences():
    z, r, ids, comp = _batch()
    z = torch.nan_to_num(z, nan=0.5).requires_grad_()

    def stats(x):  # rows 0 and 2: right and left padding, full Jacobian
        s = tdpo_statistics_from_logits(x, r[::2], ids[::2], comp[::2], chunk_elements=3 * V)
        return s.logratio, s.seqkl, s.policy_logps

    x = z.detach()[::2].clone().requires_grad_()
    assert torch.autograd.gradcheck(stats, (x,), eps=1e-6, atol=1e-7)


def test_tdpo1_loss_gradient_matches_finite_differences_and_tdpo2_is_not_a_gradient():
    z, r, ids, comp = _batch()
    z = torch.nan_to_num(z, nan=0.5).requires_grad_()

    def loss(variant):
        def f(x):
            s = tdpo_statistics_from_logits(x, r, ids, comp)
            lp, ref, kl = s.policy_logps, s.ref_logps, s.seqkl
            return tdpo_preference_loss(
                lp[:2], lp[2:], ref[:2], ref[2:], kl[:2], kl[2:], beta=0.7, variant=variant
            )[0]

        return f

    # the losses: random directions (fast mode), still finite differences
    assert torch.autograd.gradcheck(loss("tdpo1"), (z,), eps=1e-6, atol=1e-7, fast_mode=True)
    # TDPO2's update drops the chosen KL's gradient: it is not the derivative of its value
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(loss("tdpo2"), (z,), eps=1e-6, atol=1e-7, fast_mode=True)


# ----------------------------------------------------------------------------- memory


class _Allocations(TorchDispatchMode):
    """Every tensor an op returns in fresh storage (not a view or an in-place result of an input)."""

    def __init__(self):
        super().__init__()
        self.sizes: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.sizes.append((str(func), t.numel()))
        return out


def _memory_case():
    torch.manual_seed(1)
    B, L, Vb = 3, 8, 50
    z = torch.randn(B, L, Vb, requires_grad=True)
    r = torch.randn(B, L, Vb)
    ids = torch.randint(0, Vb, (B, L))
    comp = torch.zeros(B, L, dtype=torch.long)
    comp[:, 3:] = 1
    return z, r, ids, comp


def _saved_sizes(fn):
    """(numel, storage pointer) of every tensor autograd saves while ``fn`` runs."""
    saved = []

    def pack(t):
        saved.append((t.numel(), t.untyped_storage().data_ptr()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return saved


def test_autograd_saves_the_logits_themselves_and_no_other_batch_vocabulary_tensor():
    z, r, ids, comp = _memory_case()
    B, L, _ = z.shape
    saved = _saved_sizes(lambda: tdpo_statistics_from_logits(z, r, ids, comp, chunk_elements=100))
    big = {ptr for n, ptr in saved if n > B * L}
    assert big == {z.untyped_storage().data_ptr(), r.untyped_storage().data_ptr()}

    def naive():  # positive control: the direct formula saves (B, L, V) results of its own
        lp, lm = torch.log_softmax(z, -1), torch.log_softmax(r, -1)
        return (lm.exp() * (lm - lp)).sum(-1)

    ptrs = {z.untyped_storage().data_ptr(), r.untyped_storage().data_ptr()}
    assert any(n == z.numel() and ptr not in ptrs for n, ptr in _saved_sizes(naive))


@pytest.mark.slow  # the first TorchDispatchMode imports torch._dynamo (seconds)
def test_forward_allocates_only_chunks_and_backward_only_the_gradient():
    z, r, ids, comp = _memory_case()
    full, Vb = z.numel(), z.shape[-1]
    with _Allocations() as rec:
        s = tdpo_statistics_from_logits(z, r, ids, comp, chunk_elements=2 * Vb)
        forward = list(rec.sizes)
        rec.sizes.clear()
        (s.logratio.sum() - 0.3 * s.seqkl.sum()).backward()
        backward = list(rec.sizes)
    # forward: nothing bigger than one chunk (2 positions x V, float64 temporaries)
    assert forward and max(n for _, n in forward) <= 2 * Vb
    # backward: exactly one (B, L, V) tensor, the gradient itself; the rest chunk-sized
    assert [n for _, n in backward if n > 2 * Vb] == [full]
    assert z.grad.numel() == full

    # positive control: the direct formula allocates several (B, L, V) tensors
    with _Allocations() as naive:
        lp, lm = torch.log_softmax(z, -1), torch.log_softmax(r, -1)
        (lm.exp() * (lm - lp)).sum(-1)
    assert sum(n >= full for _, n in naive.sizes) >= 4


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "change, match",
    [
        (
            lambda z, r, i, c: (z, r[:, :, :-1], i, c),
            "ref_logits must have shape|ref_logits must have the shape",
        ),
        (lambda z, r, i, c: (z, r.long(), i, c), "ref_logits must be a floating"),
        (lambda z, r, i, c: (z[0], r, i, c), "logits must have shape"),
        (lambda z, r, i, c: (z, r, i.clamp(max=0) + V, c), "outside the logits' vocabulary"),
        (lambda z, r, i, c: (z.fill_(math.inf), r, i, c), "must be finite"),
        (lambda z, r, i, c: (z, r, i, c * 0), "empty completion"),
    ],
)
def test_bad_input_raises_value_error(change, match):
    args = change(*_batch())
    with pytest.raises(ValueError, match=match):
        tdpo_statistics_from_logits(*args)


def test_bad_chunk_and_loss_arguments():
    z, r, ids, comp = _batch()
    with pytest.raises(ValueError, match="chunk_elements"):
        tdpo_statistics_from_logits(z, r, ids, comp, chunk_elements=0)
    args = ([-1.0], [-2.0], [-1.5], [-1.5], [0.2], [0.6])
    with pytest.raises(ValueError, match="variant"):
        tdpo_preference_loss(*args, beta=0.1, variant="tdpo3")
    with pytest.raises(ValueError, match="beta"):
        tdpo_preference_loss(*args, beta=0.0)
    with pytest.raises(ValueError, match="alpha"):
        tdpo_preference_loss(*args, beta=0.1, alpha=-1.0)
    with pytest.raises(ValueError, match="seqkl_rejected"):
        tdpo_preference_loss(*args[:5], [0.6, 0.1], beta=0.1)

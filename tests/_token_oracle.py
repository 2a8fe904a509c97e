"""Independent numpy / itertools computations on a token tree, for the tests of prefopt_toy.tokens.

Written from the definitions with Python loops (one prefix, one position at a time), sharing no
code with the package: the sequences are enumerated here by recursion, each probability is a
product along a path, each KL a loop over the vocabulary. Tables are numpy arrays whose row ``i``
belongs to ``prefixes[i]`` (the one convention taken from the package: the row order).
"""

from __future__ import annotations

import math

import numpy as np


def enumerate_sequences(vocab_size: int, max_length: int) -> list[tuple[int, ...]]:
    """Every sequence: non-end tokens then EOS (= vocab_size - 1), or max_length non-end tokens."""
    eos = vocab_size - 1
    out: list[tuple[int, ...]] = []

    def grow(prefix: tuple[int, ...]) -> None:
        if len(prefix) == max_length:
            out.append(prefix)
            return
        out.append((*prefix, eos))
        for a in range(eos):
            grow((*prefix, a))

    grow(())
    return out


def log_softmax_rows(table: np.ndarray) -> np.ndarray:
    rows = []
    for row in table:
        m = max(row)
        lse = m + math.log(sum(math.exp(x - m) for x in row))
        rows.append([x - lse for x in row])
    return np.array(rows)


def sequence_logp(logits: np.ndarray, prefixes: list, seq: tuple[int, ...]) -> float:
    logp = log_softmax_rows(logits)
    row = {p: i for i, p in enumerate(prefixes)}
    total = 0.0
    for t, token in enumerate(seq):
        total += logp[row[seq[:t]], token]
    return total


def visit_probability(logits: np.ndarray, prefixes: list, prefix: tuple[int, ...]) -> float:
    p = np.exp(log_softmax_rows(logits))
    row = {q: i for i, q in enumerate(prefixes)}
    prob = 1.0
    for t, token in enumerate(prefix):
        prob *= p[row[prefix[:t]], token]
    return prob


def kl_rows(ref_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """KL(ref(.|s) || pi(.|s)) for every row, by a loop over the vocabulary."""
    lr, lp = log_softmax_rows(ref_logits), log_softmax_rows(logits)
    out = []
    for i in range(lr.shape[0]):
        out.append(sum(math.exp(lr[i, v]) * (lr[i, v] - lp[i, v]) for v in range(lr.shape[1])))
    return np.array(out)


def sequential_kl(ref_logits, logits, prefixes, seq) -> float:
    kl = kl_rows(ref_logits, logits)
    row = {p: i for i, p in enumerate(prefixes)}
    return sum(kl[row[seq[:t]]] for t in range(len(seq)))


def neg_logsigmoid(x: float) -> float:
    return math.log1p(math.exp(-x)) if x > -30 else -x + math.log1p(math.exp(x))


def population_loss(
    ref_logits,
    logits,
    P,
    prefixes,
    sequences,
    *,
    algorithm,
    beta,
    alpha=0.5,
    chosen_kl_logits=None,
) -> float:
    """sum over ordered pairs w != l of 2 mu(w) mu(l) P[w, l] loss(w, l), pairs from mu_seq.

    ``chosen_kl_logits`` (TDPO2 only) evaluates SeqKL(y_w) at another table: the stop-gradient as
    a second argument, held fixed while ``logits`` moves.
    """
    n = len(sequences)
    mu_seq = [math.exp(sequence_logp(ref_logits, prefixes, s)) for s in sequences]
    r = [
        sequence_logp(logits, prefixes, s) - sequence_logp(ref_logits, prefixes, s)
        for s in sequences
    ]
    kl = [sequential_kl(ref_logits, logits, prefixes, s) for s in sequences]
    kl_w_table = logits if chosen_kl_logits is None else chosen_kl_logits
    kl_chosen = [sequential_kl(ref_logits, kl_w_table, prefixes, s) for s in sequences]
    total = 0.0
    for w in range(n):
        for l in range(n):
            if w == l:
                continue
            h = r[w] - r[l]
            if algorithm == "dpo":
                z = h
            elif algorithm == "tdpo1":
                z = h - (kl[l] - kl[w])
            else:
                z = h - alpha * (kl[l] - kl_chosen[w])
            total += 2.0 * mu_seq[w] * mu_seq[l] * P[w][l] * neg_logsigmoid(beta * z)
    return total


def finite_difference(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar function of an array, entry by entry."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (f(up) - f(down)) / (2 * eps)
    return grad

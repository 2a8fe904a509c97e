r"""The online half of the GPT-2 training loop: sampled pairs, labels from a judge, Nash-MD-PG.

Three pieces the trainer (``prefopt_toy.lm.train.trainer``) composes, as the exact toy composes a pair
source, a labeller and a per-pair loss:

- :func:`sample_pairs`: two completions per prompt, with stop-gradient (sampling runs under
  ``torch.no_grad``). Online DPO / IPO draw both from the policy (``mixture = 0``); IPO-MD draws both
  from the token-level geometric mixture :math:`\pi^{1-m}\mu^m`; Nash-MD-PG draws ``y`` from the
  policy and ``y'`` from the mixture.
- :func:`label_weights`: the weight :math:`w_i` given to "``a_i`` beats ``b_i``" from the judge's
  probability :math:`p_i = \Pr(a_i \succ b_i)`: soft (:math:`w = p`), hard (the more likely winner)
  or the frequency of ``n`` sampled Bernoulli labels.
- :func:`nash_md_pg_surrogate`: the per-sample policy-gradient surrogate of Nash-MD-PG.

Devices: generators stay on the CPU; ``sample_pairs`` samples on the models' device and returns
CPU batches (moved to the model's device by the log-prob functions right before a forward pass);
``label_weights`` returns on ``probs``' device, and the surrogate moves the label weights to the
loss's device. The CUDA path is written but was not run on a GPU here.

References
----------
Munos et al., arXiv:2312.00886v4, Sec. 7 and App. F (Nash-MD-PG, the token-level mixture);
Calandriello et al., arXiv:2403.08635v1, Sec. 4-5 (online IPO with preference probabilities,
IPO-MD); TRL https://github.com/huggingface/trl v1.13.0 (``OnlineDPOTrainer``: hard labels;
``experimental/nash_md``: the Nash-MD loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prefopt_toy._validate import as_int, as_positive_float
from prefopt_toy.lm.data import build_batch, check_tokenizer
from prefopt_toy.lm.sampling import sample

__all__ = ["LABEL_MODES", "SampledPairs", "label_weights", "nash_md_pg_surrogate", "sample_pairs"]

LABEL_MODES = ("soft", "hard", "sampled")
"""Online label modes (offline training uses the dataset's labels, ``"dataset"``)."""


def label_weights(
    probs: Tensor,
    mode: str,
    *,
    judge=None,
    texts_a=None,
    texts_b=None,
    generator: torch.Generator | None = None,
    n_samples: int = 1,
) -> Tensor:
    r"""The weight :math:`w_i \in [0, 1]` of "``a_i`` wins" in the soft-label loss.

    The loss is :math:`w\,\ell(h) + (1 - w)\,\ell(-h)`.

    Parameters
    ----------
    probs : Tensor, shape (B,)
        The judge's :math:`p_i = \Pr(a_i \succ b_i)`.
    mode : {"soft", "hard", "sampled"}
        ``"soft"``: :math:`w = p` (Calandriello et al.'s online IPO / online DPO with preference
        probabilities). ``"hard"``: the more likely winner, :math:`w = 1[p > 1/2]`, with
        :math:`w = 1/2` at an exact tie (no winner, so both orders weigh the same; TRL's online
        DPO breaks ties toward the first completion instead). ``"sampled"``: the frequency of
        ``n_samples`` Bernoulli(:math:`p`) labels, drawn by ``n_samples`` successive calls to
        ``judge.sample_labels(texts_a, texts_b, generator)``.
    judge, texts_a, texts_b, generator, n_samples
        Needed by ``"sampled"`` only.

    Returns
    -------
    Tensor, shape (B,), float64, on ``probs``' device (sampled labels are moved there from the
    generator's device).

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1, Sec. 4 (soft labels); TRL v1.13.0
    ``OnlineDPOTrainer`` (hard labels from the larger reward).

    Examples
    --------
    >>> label_weights(torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64), "hard").tolist()
    [0.0, 0.5, 1.0]
    """
    if not isinstance(probs, Tensor) or probs.ndim != 1:
        raise ValueError(
            f"probs must be a (B,) tensor, got {getattr(probs, 'shape', type(probs).__name__)}"
        )
    p = probs.detach().to(torch.float64)
    if not bool(torch.isfinite(p).all()) or bool(((p < 0) | (p > 1)).any()):
        raise ValueError("probs must be probabilities in [0, 1]")
    if mode == "soft":
        return p
    if mode == "hard":
        return torch.where(p > 0.5, 1.0, torch.where(p < 0.5, 0.0, 0.5)).to(torch.float64)
    if mode == "sampled":
        n = as_int(n_samples, "n_samples", minimum=1)
        if judge is None or generator is None or texts_a is None or texts_b is None:
            missing = [
                k
                for k, v in (
                    ("judge", judge),
                    ("texts_a", texts_a),
                    ("texts_b", texts_b),
                    ("generator", generator),
                )
                if v is None
            ]
            raise ValueError(
                f"mode='sampled' needs judge, texts_a, texts_b and generator; missing {missing}"
            )
        if len(texts_a) != p.shape[0] or len(texts_b) != p.shape[0]:
            raise ValueError(
                f"texts_a and texts_b must hold one text per entry of probs ({p.shape[0]}), "
                f"got {len(texts_a)} and {len(texts_b)}"
            )
        total = torch.zeros_like(p)
        for _ in range(n):
            total += judge.sample_labels(texts_a, texts_b, generator).to(
                device=p.device, dtype=torch.float64
            )
        return total / n
    raise ValueError(f"mode must be one of {LABEL_MODES}, got {mode!r}")


@dataclass(frozen=True)
class SampledPairs:
    """Two completions per prompt, as right-padded ``(2B, T)`` sequences.

    Rows ``[:B]`` are ``a`` (``y``), rows ``[B:]`` are ``b`` (``y'``) for the same prompts.
    """

    input_ids: Tensor
    """(2B, T) int64, prompt + completion, right-padded."""
    attention_mask: Tensor
    """(2B, T) int64."""
    completion_mask: Tensor
    """(2B, T) int64, 1 on completion tokens (with their EOS when one was generated)."""
    texts_a: list[str]
    """Decoded completions ``a`` (special tokens removed): what the judge reads."""
    texts_b: list[str]
    mixture_a: float
    """The mixture weight ``a`` was drawn with (0: the policy)."""
    mixture_b: float


@torch.no_grad()
def sample_pairs(
    model,
    ref_model,
    tokenizer,
    prompt_batch: dict[str, Tensor],
    *,
    mixture_a: float,
    mixture_b: float,
    max_new_tokens: int,
    generator: torch.Generator,
    temperature: float = 1.0,
) -> SampledPairs:
    r"""Sample ``a ~ pi^{1-m_a} mu^{m_a}`` and ``b ~ pi^{1-m_b} mu^{m_b}`` for every prompt (no gradient).

    When ``mixture_a == mixture_b`` the two completions come from one ``sample`` call on the prompts
    stacked twice (rows ``[:B]`` then ``[B:]``); otherwise ``a`` is drawn first, then ``b``, from
    the same generator.

    Parameters
    ----------
    model, ref_model : causal LMs (policy and reference)
    tokenizer : GPT-2 tokenizer (EOS and padding ids; decoding for the judge)
    prompt_batch : dict
        ``tokenize_prompts`` output, left-padded ``(B, T)`` tensors.
    mixture_a, mixture_b : float in [0, 1]
        Weight on the reference of each side's sampling distribution.
    max_new_tokens : int
    generator : torch.Generator
    temperature : float, default 1

    Returns
    -------
    SampledPairs
        Its tensors on the CPU (built from the sampled token lists), whatever the models' device.

    References
    ----------
    Calandriello et al., arXiv:2403.08635v1, Sec. 5 (IPO-MD samples both from the mixture);
    Munos et al., arXiv:2312.00886v4, Sec. 7 (Nash-MD-PG: ``y ~ pi``, ``y' ~`` the mixture).
    """
    if (
        not isinstance(prompt_batch, dict)
        or not {"input_ids", "attention_mask"} <= prompt_batch.keys()
    ):
        raise ValueError(
            "prompt_batch must be a dict with 'input_ids' and 'attention_mask' (tokenize_prompts' "
            f"output), got {type(prompt_batch).__name__}"
            + (f" with keys {sorted(prompt_batch)}" if isinstance(prompt_batch, dict) else "")
        )
    check_tokenizer(tokenizer)
    ids, mask = prompt_batch["input_ids"], prompt_batch["attention_mask"]  # (B, T)
    if not isinstance(ids, Tensor) or ids.ndim != 2:
        raise ValueError(
            f"prompt_batch['input_ids'] must be a (B, T) tensor, got {getattr(ids, 'shape', type(ids).__name__)}"
        )
    B = ids.shape[0]
    kw = dict(
        max_new_tokens=max_new_tokens,
        generator=generator,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        temperature=temperature,
        ref_model=ref_model,
    )
    if mixture_a == mixture_b:
        out = sample(model, torch.cat([ids, ids]), torch.cat([mask, mask]), mixture=mixture_a, **kw)
        comp_ids, comp_mask = out.completion_ids, out.completion_mask  # (2B, N)
        sides = [(comp_ids[:B], comp_mask[:B]), (comp_ids[B:], comp_mask[B:])]
    else:
        sa = sample(model, ids, mask, mixture=mixture_a, **kw)
        sb = sample(model, ids, mask, mixture=mixture_b, **kw)
        sides = [(sa.completion_ids, sa.completion_mask), (sb.completion_ids, sb.completion_mask)]
    prompts = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    completions, texts = [], []
    for cids, cmask in sides:
        rows = [row[m.bool()].tolist() for row, m in zip(cids, cmask)]
        completions.extend(rows)
        texts.append(tokenizer.batch_decode(rows, skip_special_tokens=True))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batch = build_batch(prompts + prompts, completions, pad_token_id=pad, padding_side="right")
    return SampledPairs(
        batch["input_ids"],
        batch["attention_mask"],
        batch["completion_mask"],
        texts[0],
        texts[1],
        float(mixture_a),
        float(mixture_b),
    )


def nash_md_pg_surrogate(
    policy_logps: Tensor, ref_logps: Tensor, win: Tensor, *, tau: float
) -> Tensor:
    r"""Per-sample Nash-MD-PG surrogate loss whose gradient is the (descent) policy-gradient estimate.

    .. math:: L_i = \tau\,\mathrm{sg}\big(\log\pi(y_i) - \log\mu(y_i)\big)\,\log\pi(y_i)
                    - \big(w_i - \tfrac12\big)\,\log\pi(y_i),

    so :math:`\nabla_\theta \tfrac1B\sum_i L_i = \tfrac1B\sum_i \big(\tau\log\tfrac{\pi}{\mu}(y_i)
    - (w_i - \tfrac12)\big)\nabla_\theta\log\pi(y_i)`, with :math:`y_i \sim \pi` and
    :math:`w_i` the judge's :math:`P(y_i \succ y'_i)` (or a label derived from it) against
    :math:`y'_i \sim \pi^{1-m}\mu^m`.

    **Signs.** Munos et al. write the *ascent* direction
    :math:`\hat g = \nabla\log\pi(y)\,\big(P(y \succ y') - \tfrac12 - \tau\log\tfrac{\pi}{\mu}(y)\big)`;
    minimising :math:`L` follows :math:`-\hat g`, i.e. the same update. :math:`\tfrac12 = P(y \succ y)`
    is the baseline. As in TRL's ``NashMDTrainer``, the KL reward is the whole sequence's
    :math:`\log\pi/\mu` (not the paper's token-causal split) and the regulariser is toward
    :math:`\mu`, not toward the mixture (the gradients agree at one step, App. F.3).

    Parameters
    ----------
    policy_logps : Tensor, shape (B,)
        :math:`\log\pi(y_i)` with gradient (summed over tokens for the theory's sequence log-prob).
    ref_logps : Tensor, shape (B,)
        :math:`\log\mu(y_i)` (detached here).
    win : Tensor, shape (B,)
        :math:`P(y_i \succ y'_i)` in [0, 1] (no gradient); moved to ``policy_logps``' device
        and dtype.
    tau : float > 0
        A finite real number (``ValueError`` otherwise).

    Returns
    -------
    Tensor, shape (B,)

    References
    ----------
    Munos et al., arXiv:2312.00886v4, Sec. 7 and App. F; TRL v1.13.0
    ``trl/experimental/nash_md/nash_md_trainer.py`` (``_compute_losses``).

    Examples
    --------
    >>> lp = torch.tensor([-2.0], requires_grad=True)
    >>> nash_md_pg_surrogate(lp, torch.tensor([-3.0]), torch.tensor([1.0]), tau=0.1).sum().backward()
    >>> round(float(lp.grad), 6)  # tau * (lp - ref) - (w - 1/2) = 0.1 - 0.5
    -0.4
    """
    for name, t in (("policy_logps", policy_logps), ("ref_logps", ref_logps), ("win", win)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a (B,) tensor, got {type(t).__name__}")
    tau = as_positive_float(tau, "tau")
    if (
        policy_logps.shape != ref_logps.shape
        or policy_logps.shape != win.shape
        or policy_logps.ndim != 1
    ):
        raise ValueError(
            f"policy_logps, ref_logps and win must share one (B,) shape, got "
            f"{tuple(policy_logps.shape)}, {tuple(ref_logps.shape)}, {tuple(win.shape)}"
        )
    d = win.detach()
    if d.is_complex() or not bool((torch.isfinite(d) & (d >= 0) & (d <= 1)).all()):
        raise ValueError(
            "win must hold probabilities in [0, 1] (P(y beats y'), or a label derived from it)"
        )
    w = d.to(device=policy_logps.device, dtype=policy_logps.dtype)
    log_ratio = (policy_logps.detach() - ref_logps.detach()).to(policy_logps.dtype)  # (B,)
    return tau * log_ratio * policy_logps - (w - 0.5) * policy_logps

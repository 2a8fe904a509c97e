"""Paper records cited across the suite: one entry per source, reused by every docstring and figure.

Each record pins the arXiv id *with version*, because equation numbers move between versions.
Docstrings cite a paper as ``<key>: <arXiv id>, Eq. (n)``; ``cite(key)`` returns the full line.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    """One bibliographic record."""

    key: str
    """Short key used in docstrings, e.g. ``"ipo"``."""
    authors: str
    """First author et al."""
    year: int
    """Year of the cited version."""
    title: str
    """Title as published."""
    arxiv: str | None
    """arXiv id with version, e.g. ``"2310.12036v2"``; None for papers not on arXiv."""
    venue: str
    """Where it appeared (or "preprint")."""

    def citation(self) -> str:
        """One-line human-readable citation."""
        where = f"arXiv:{self.arxiv}" if self.arxiv else self.venue
        return f"{self.authors} ({self.year}). {self.title}. {where}."


PAPERS: dict[str, Paper] = {
    p.key: p
    for p in [
        Paper(
            "bt",
            "Bradley & Terry",
            1952,
            "Rank analysis of incomplete block designs: I. The method of paired comparisons",
            None,
            "Biometrika 39(3/4):324-345",
        ),
        Paper(
            "zermelo",
            "Zermelo",
            1929,
            "Die Berechnung der Turnier-Ergebnisse als ein Maximumproblem der Wahrscheinlichkeitsrechnung",
            None,
            "Mathematische Zeitschrift 29:436-460",
        ),
        Paper(
            "ford",
            "Ford",
            1957,
            "Solution of a ranking problem from binary comparisons",
            None,
            "American Mathematical Monthly 64(8):28-33",
        ),
        Paper(
            "laplace",
            "Laplace",
            1774,
            "Mémoire sur la probabilité des causes par les événements",
            None,
            "Mémoires de mathématique et de physique, présentés à l'Académie royale des "
            "sciences, par divers savans 6:621-656",
        ),
        Paper(
            "tversky",
            "Tversky",
            1969,
            "Intransitivity of preferences",
            None,
            "Psychological Review 76(1):31-48",
        ),
        Paper(
            "dpo",
            "Rafailov et al.",
            2023,
            "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
            "2305.18290v3",
            "NeurIPS 2023",
        ),
        Paper(
            "cdpo",
            "Mitchell",
            2023,
            "A note on DPO with noisy preferences & relationship to IPO",
            None,
            "technical note, ericmitchell.ai/cdpo.pdf",
        ),
        Paper(
            "rdpo",
            "Chowdhury et al.",
            2024,
            "Provably Robust DPO: Aligning Language Models with Noisy Feedback",
            "2403.00409v2",
            "ICML 2024",
        ),
        Paper(
            "ipo",
            "Azar et al.",
            2023,
            "A General Theoretical Paradigm to Understand Learning from Human Preferences",
            "2310.12036v2",
            "AISTATS 2024",
        ),
        Paper(
            "slic_hf",
            "Zhao et al.",
            2023,
            "SLiC-HF: Sequence Likelihood Calibration with Human Feedback",
            "2305.10425v1",
            "preprint",
        ),
        Paper(
            "gpo",
            "Tang et al.",
            2024,
            "Generalized Preference Optimization: A Unified Approach to Offline Alignment",
            "2402.05749v2",
            "ICML 2024",
        ),
        Paper(
            "savage",
            "Masnadi-Shirazi & Vasconcelos",
            2008,
            "On the Design of Loss Functions for Classification: theory, robustness to outliers, and SavageBoost",
            None,
            "NeurIPS 2008",
        ),
        Paper(
            "nlhf",
            "Munos et al.",
            2023,
            "Nash Learning from Human Feedback",
            "2312.00886v4",
            "ICML 2024",
        ),
        Paper(
            "online_ipo",
            "Calandriello et al.",
            2024,
            "Human Alignment of Large Language Models through Online Preference Optimisation",
            "2403.08635v1",
            "ICML 2024",
        ),
        Paper(
            "trl",
            "von Werra et al.",
            2020,
            "TRL: Transformer Reinforcement Learning",
            None,
            "github.com/huggingface/trl",
        ),
    ]
}


def cite(key: str) -> str:
    """The one-line citation for ``key`` (see ``PAPERS``)."""
    try:
        return PAPERS[key].citation()
    except KeyError:
        raise ValueError(f"key must be one of {sorted(PAPERS)}, got {key!r}") from None

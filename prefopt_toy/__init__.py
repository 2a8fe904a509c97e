"""prefopt_toy: exact tabular preference optimisation (being assembled; see README)."""

__version__ = "0.1.0"

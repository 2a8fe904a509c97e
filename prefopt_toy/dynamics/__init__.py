"""Exact learning dynamics on tabular preference games (expectations by enumeration, exact gradients)."""

# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The RLHF/DPO optimum as the KL strength beta moves
#
# This lecture teaches how the KL strength beta moves the RLHF/DPO optimum from the reference
# policy mu (large beta) to the vertex of the Bradley-Terry argmax (small beta). Move the beta
# slider, or press the arrow keys on it (ten presses a decade), and watch the optimum slide along
# its path on the simplex.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"  # the widget is the same in smoke mode
P = [[0.50, 0.55, 0.55], [0.45, 0.50, 0.95], [0.45, 0.05, 0.50]]  # y0 is the Condorcet winner
MU = [1 / 3, 1 / 3, 1 / 3]

# %%
from prefopt_toy import widgets

widgets.beta_explorer(P, MU, beta=1.0)

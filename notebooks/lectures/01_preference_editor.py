# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Preference games: Bradley-Terry against a Condorcet winner
#
# This lecture teaches how a Bradley-Terry fit can rank the actions differently from the Condorcet
# winner and the Nash equilibrium of the same preferences. Type the three probabilities
# p01 = P(y0 beats y1), p02 and p12, and watch the fit, the winner and the equilibrium move.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"  # the widget is the same in smoke mode
P = [[0.50, 0.55, 0.55], [0.45, 0.50, 0.95], [0.45, 0.05, 0.50]]  # y0 is the Condorcet winner

# %%
from prefopt_toy import widgets

widgets.preference_editor(P)

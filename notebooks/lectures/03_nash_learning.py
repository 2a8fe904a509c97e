# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Nash learning: Nash-MD, its step size, and IPO-MD
#
# This lecture teaches that Nash-MD with the decaying step 2 / (tau (t + 2)) reaches the
# regularised Nash equilibrium within its bound 8 / (tau^2 (t + 1)), while a constant step lands
# on the IPO-MD fixed point with mixture eta tau instead. Move tau, eta and the mixture and watch
# the trajectories on the simplex and their distance to the regularised Nash.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("PREFOPT_SMOKE") == "1"
GAME = "rock_paper_scissors"  # a named game (prefopt_toy.games.named): skewed mu, uniform Nash
STEPS = 300 if SMOKE else 500  # 500: a tau move recomputes in ~80 ms (1000: ~165 ms)

# %%
from prefopt_toy import widgets
from prefopt_toy.games.named import named_game

game = named_game(GAME)
widgets.nash_learning(game.preference_matrix(), game.reference_policy(), tau=0.1, steps=STEPS)

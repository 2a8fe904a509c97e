"""Figures and drawing, with matplotlib and no pyplot global state; each module on its own.

- ``draw``: the simplex, policies and trajectories on it, colours, ``save_figure``;
- ``style``: the look shared by the dynamics figures (one colour per algorithm and target), and
  the size text is shown at in a notebook (``small_texts``);
- ``experiments``: named, frozen configs behind every figure (no matplotlib, no solver);
- ``figures``: the figure registry (``FIGURES``, ``write_figures``), the reference-solutions,
  trajectories and Nash-MD convergence figures;
- ``tau_path``, ``ipo_toy``: the tau-path figure and the IPO paper's toy bandits;
- ``family``: notebook 08's figures of the rest of the DPO family (KTO's reference point, SimPO's
  gamma, length exploitation, likelihood displacement and DPOP, beta-DPO's batch beta);
- ``notebook``: figures and tables the teaching notebooks share (tour, online IPO, zoo): trajectories
  with a zoom inset where end points crowd, the solution table with both exploitabilities.

Nothing is imported here: the command line reads ``experiments`` without loading matplotlib.
"""

"""Every per-pair loss of the exact core as ``f(margin, strength)``, for tests that sweep them all
(not a test module). GPO's functions come from ``GPO_FUNCTIONS``, so a new one is swept too."""

from __future__ import annotations

import prefopt_toy as pt

LOSSES = {
    "dpo": lambda h, s: pt.dpo_loss(h, s),
    "cdpo": lambda h, s: pt.dpo_loss(h, s, label_smoothing=0.25),
    "robust_dpo": lambda h, s: pt.robust_dpo_loss(h, s, 0.25),
    "ipo": lambda h, s: pt.ipo_loss(h, s),
    "slic": lambda h, s: pt.slic_loss(h, s),
    **{f"gpo_{f}": (lambda h, s, f=f: pt.gpo_loss(h, s, f)) for f in pt.GPO_FUNCTIONS},
}

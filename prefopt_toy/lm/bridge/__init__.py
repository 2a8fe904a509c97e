"""The bridge: the exact toy predicts the class distribution GPT-2 converges to on a lifted game.

- ``class_estimate``: a model's class distribution with per-class Wilson intervals;
- ``predict``: the exact toy's prediction per algorithm (the class-level game, ``mu_class``);
- ``run``: ``run_bridge``: measure ``mu_class``, train, compare (``BridgeResult``); the lifted
  judge and the offline pairs;
- ``runs``: saving, reading and grids of bridge runs (``bridge.json`` next to ``run.jsonl``);
- ``error``: the sampling error of the measured total variation;
- ``figure``, ``widget``: the simplex figure, class curves, and ``bridge_explorer``;
- ``demo``: the command line's ``bridge`` (``python -m prefopt_toy bridge``);
- ``family``: the bridge for sDPO and R-DPO (``run_family_bridge``, ``predict_family``);
- ``reference_free``: SimPO and ORPO on GPT-2 against the exact toy run
  (``run_reference_free_bridge``, ``predict_reference_free``).
- ``length_game``: the lifted game whose classes are completion lengths (``LENGTH_TASK``,
  ``length_game``, ``length_judge``), R-DPO's bridge;
- ``ai_feedback``: a language-model judge's class game (raw and symmetrised), the toy's
  prediction for online IPO / DPO with it, and the self-rewarding loop;
- ``judge_distill``: a GPT-2 fine-tuned into a judge of a known raw class judge J (a distilled
  judge whose class game is J by design), and how close its measured game comes.
"""

from .ai_feedback import (
    AI_FEEDBACK_ALGORITHMS,
    AIFeedbackResult,
    ClassTrackingJudge,
    JudgeGame,
    SelfRewardingRound,
    measure_judge_game,
    predict_ai_feedback,
    run_ai_feedback,
    self_rewarding,
)
from .class_estimate import (
    ClassEstimate,
    class_estimate,
    estimate_class_distribution,
    total_variation,
)
from .error import TVError, tv_sampling_error
from .family import FAMILY_BRIDGE, predict_family, run_family_bridge
from .figure import bridge_figure, class_curves, landing_figure
from .judge_distill import (
    DistilledJudge,
    designed_pair_bias,
    distill_judge,
    distillation_pairs,
    judge_distill_loss,
    judge_recovery,
)
from .length_game import LENGTH_TASK, LengthJudge, LengthTask, length_game, length_judge
from .predict import BRIDGE_ALGORITHMS, predict
from .reference_free import (
    REFERENCE_FREE_BRIDGE,
    predict_reference_free,
    reference_free_verdict,
    run_reference_free_bridge,
    simpo_uniform_optimum,
)
from .run import BridgeResult, lifted_judge, preference_dataset, run_bridge
from .runs import BridgeRun, load_bridge_run, load_bridge_runs, run_bridge_grid, save_bridge_run
from .widget import bridge_explorer

__all__ = [
    "AI_FEEDBACK_ALGORITHMS",
    "AIFeedbackResult",
    "ClassTrackingJudge",
    "JudgeGame",
    "SelfRewardingRound",
    "measure_judge_game",
    "predict_ai_feedback",
    "run_ai_feedback",
    "self_rewarding",
    "DistilledJudge",
    "designed_pair_bias",
    "distill_judge",
    "distillation_pairs",
    "judge_distill_loss",
    "judge_recovery",
    "BRIDGE_ALGORITHMS",
    "FAMILY_BRIDGE",
    "LENGTH_TASK",
    "REFERENCE_FREE_BRIDGE",
    "BridgeResult",
    "BridgeRun",
    "ClassEstimate",
    "LengthJudge",
    "LengthTask",
    "TVError",
    "bridge_explorer",
    "bridge_figure",
    "landing_figure",
    "class_curves",
    "class_estimate",
    "estimate_class_distribution",
    "length_game",
    "length_judge",
    "lifted_judge",
    "load_bridge_run",
    "load_bridge_runs",
    "predict",
    "predict_family",
    "predict_reference_free",
    "preference_dataset",
    "reference_free_verdict",
    "run_bridge",
    "run_bridge_grid",
    "run_family_bridge",
    "run_reference_free_bridge",
    "save_bridge_run",
    "simpo_uniform_optimum",
    "total_variation",
    "tv_sampling_error",
]

"""Unlearning on GPT-2: a TOFU-like fact corpus, GA / GradDiff / NPO / AltPO, TOFU's metrics.

- ``corpus``: invented people and their facts as question/answer pairs, with paraphrased,
  perturbed and alternate answers, and the forget/retain split;
- ``models``: the "full" and "retain" fine-tuned models (cached like ``default_model``);
- ``metrics``: truth ratio, forget quality (KS-test p-value), answer probability, ROUGE-L recall,
  model utility, a grammar-based fluency stand-in;
- ``evaluation``: runs a model on the questions and computes the metrics;
- ``unlearn``: the unlearning loop over the losses of ``prefopt_toy.losses.unlearning``;
- ``figure``: forget quality against model utility, one curve per method.

References
----------
Maini et al., arXiv:2401.06121v1 (TOFU); Zhang et al., arXiv:2404.05868v2 (NPO); Mekala et al.,
arXiv:2409.13474v1 (AltPO).
"""

from .corpus import ATTRIBUTES, FactCorpus, FactQuestion, fact_corpus
from .evaluation import answer_losses, evaluate, generate_answers, question_ratios
from .figure import tradeoff_figure
from .metrics import (
    answer_probability,
    forget_quality,
    harmonic_mean,
    rouge_l_recall,
    truth_ratio,
    truth_ratio_score,
    value_accuracy,
    well_formed_fraction,
)
from .models import FINETUNE_RECIPES, FinetuneRecipe, finetuned_model
from .unlearn import METHODS, UnlearnConfig, UnlearnRun, unlearn

__all__ = [
    "ATTRIBUTES",
    "FINETUNE_RECIPES",
    "FactCorpus",
    "FactQuestion",
    "FinetuneRecipe",
    "METHODS",
    "UnlearnConfig",
    "UnlearnRun",
    "answer_losses",
    "answer_probability",
    "evaluate",
    "fact_corpus",
    "finetuned_model",
    "forget_quality",
    "generate_answers",
    "harmonic_mean",
    "question_ratios",
    "rouge_l_recall",
    "tradeoff_figure",
    "truth_ratio",
    "truth_ratio_score",
    "unlearn",
    "value_accuracy",
    "well_formed_fraction",
]

"""The generated fact corpus: split sizes, answers, perturbed and alternate answers, the grammar."""

from __future__ import annotations

import pytest

from prefopt_toy.lm.unlearning.corpus import ATTRIBUTES, fact_corpus


def test_split_and_questions():
    c = fact_corpus(30, forget_fraction=0.1, seed=2)
    assert len(set(c.people)) == 30
    assert len(c.forget_people) == 3 and set(c.forget_people) <= set(c.people)
    assert len(c.questions) == 30 * len(ATTRIBUTES)
    assert len(c.forget) == 3 * len(ATTRIBUTES)
    assert {q.person for q in c.retain}.isdisjoint(c.forget_people)
    assert len(c.training_texts("full")) == 2 * len(c.questions)
    assert len(c.training_texts("retain")) == 2 * len(c.retain)
    assert not any(p in t for t in c.training_texts("retain") for p in c.forget_people)


def test_answers_perturbed_and_alternates():
    c = fact_corpus(12, n_perturbed=3, n_alternates=4, seed=5)
    by_key = {a.key: a for a in ATTRIBUTES}
    for q in c.questions:
        attr = by_key[q.attribute]
        assert q.value in attr.values and q.value in q.answer and q.value in q.paraphrase
        assert q.person in q.prompt and q.prompt.endswith("Answer:")
        assert len(q.perturbed) == 3 and len(q.alternates) == 4
        pert_values = {
            v for v in attr.values if attr.paraphrase.format(name=q.person, value=v) in q.perturbed
        }
        alt_values = {
            v for v in attr.values if attr.answer.format(name=q.person, value=v) in q.alternates
        }
        # false, distinct, disjoint from each other
        assert len(pert_values) == 3 and len(alt_values) == 4
        assert q.value not in pert_values | alt_values
        assert pert_values.isdisjoint(alt_values)
        for text in (q.answer, q.paraphrase, *q.perturbed, *q.alternates):
            assert text.startswith(" ") and text.endswith(".")
            assert c.is_well_formed(text)


def test_deterministic_and_seeded():
    assert fact_corpus(10, seed=1) == fact_corpus(10, seed=1)
    assert fact_corpus(10, seed=1) != fact_corpus(10, seed=2)


def test_grammar_rejects_off_corpus_text():
    c = fact_corpus(5, seed=0)
    name = c.people[0]
    assert c.is_well_formed(f" {name} was born in Lima. extra words")
    assert not c.is_well_formed(f" {name} was born in Atlantis.")  # value outside vocabulary
    assert not c.is_well_formed(" Nobody Known was born in Lima.")  # name outside the corpus
    assert not c.is_well_formed(" born born born")
    assert not c.is_well_formed("")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_people": 1},
        {"n_people": 10, "forget_fraction": 0.0},
        {"n_people": 10, "forget_fraction": 1.0},
        {"n_people": 10, "n_perturbed": 0},
        {"n_people": 10, "n_perturbed": 5, "n_alternates": 4},
        {"n_people": 10, "seed": 1.5},
        {"n_people": 10_000},
    ],
)
def test_bad_input_raises(kwargs):
    with pytest.raises(ValueError):
        fact_corpus(**kwargs)


def test_training_texts_bad_split():
    with pytest.raises(ValueError, match="split"):
        fact_corpus(4).training_texts("forget")

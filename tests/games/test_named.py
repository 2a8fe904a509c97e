"""The registry of named three-action games (configs shared by the demo, figures and tests)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from prefopt_toy.games.named import NAMED_GAMES, NamedGame, named_game


def test_registry_has_the_four_reference_games():
    assert list(NAMED_GAMES) == [
        "transitive",
        "rock_paper_scissors",
        "three_voter_types",
        "condorcet_winner",
    ]
    for key, game in NAMED_GAMES.items():
        assert game.name == key and key.isidentifier()
        assert game.title and game.description and game.source
        assert len(game.actions) == 3 and len(set(game.actions)) == 3
        assert game.taus and all(t > 0 for t in game.taus)


def test_named_game_returns_the_config():
    assert named_game("condorcet_winner") is NAMED_GAMES["condorcet_winner"]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid names: .*condorcet_winner.*transitive"):
        named_game("prisoners_dilemma")


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        NAMED_GAMES["transitive"].taus = (5.0,)  # type: ignore[misc]


def test_every_field_has_a_docstring():
    import inspect

    source = inspect.getsource(NamedGame)
    for field in dataclasses.fields(NamedGame):
        line = next(l for l in source.splitlines() if l.strip().startswith(f"{field.name}:"))
        after = source.split(line, 1)[1].lstrip()
        assert after.startswith('"""'), f"field {field.name} has no docstring"


@pytest.mark.parametrize("name", list(NAMED_GAMES))
def test_reference_policy_is_a_full_support_policy(name):
    mu = named_game(name).reference_policy()
    assert mu.shape == (3,) and mu.dtype == torch.float64
    assert bool((mu > 0).all())
    assert float(mu.sum()) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("name", list(NAMED_GAMES))
def test_preference_matrix_is_valid(name):
    P = named_game(name).preference_matrix()
    assert P.shape == (3, 3) and P.dtype == torch.float64
    torch.testing.assert_close(P + P.T, torch.ones(3, 3, dtype=torch.float64))


def test_condorcet_game_matrix_is_the_documented_one():
    P = named_game("condorcet_winner").preference_matrix()
    expected = torch.tensor(
        [[0.5, 0.55, 0.55], [0.45, 0.5, 0.95], [0.45, 0.05, 0.5]], dtype=torch.float64
    )
    torch.testing.assert_close(P, expected)
    # y0 beats every other action; y1 has the top Borda score (mean win rate against uniform).
    assert bool((P[0, 1:] > 0.5).all())
    assert int(P.mean(dim=1).argmax()) == 1

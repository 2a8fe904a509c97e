"""The headless demo: reference tables, the reference-solutions figure, the command line, and the
claims the named games are chosen to illustrate, checked against the library's solvers."""

from __future__ import annotations

import io
import re

import pytest
import torch

from prefopt_toy.__main__ import main
from prefopt_toy.demo import run_demo
from prefopt_toy.games.named import NAMED_GAMES, named_game
from prefopt_toy.games.properties import condorcet_winner
from prefopt_toy.solutions.nash import exploitability, nash_equilibrium
from prefopt_toy.solutions.optima import ipo_optimum, rlhf_optimum
from prefopt_toy.solutions.reference import format_table, reference_paths, reference_table
from prefopt_toy.solutions.regularized import regularized_nash

SOLUTIONS = [
    "reference mu",
    "RLHF/DPO optimum",
    "IPO optimum",
    "regularized Nash",
    "Nash equilibrium",
    "Condorcet winner",
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("figures")
    stream = io.StringIO()
    paths = run_demo(out_dir, stream=stream)
    return out_dir, paths, stream.getvalue()


def test_demo_writes_png_and_pdf(demo_run):
    out_dir, paths, _ = demo_run
    png, pdf = out_dir / "reference_solutions.png", out_dir / "reference_solutions.pdf"
    assert paths == [png, pdf]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000  # four panels of curves, not a blank canvas
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert pdf.stat().st_size > 10_000


def test_demo_prints_a_table_per_game(demo_run):
    _, paths, text = demo_run
    for name in NAMED_GAMES:
        assert f"== {name}:" in text
    for solution in SOLUTIONS:
        assert text.count(solution) >= len(NAMED_GAMES)
    for path in paths:
        assert f"wrote {path}" in text


def test_figure_metadata_has_no_timestamp(demo_run):
    out_dir, _, _ = demo_run
    pdf = (out_dir / "reference_solutions.pdf").read_bytes()
    assert b"/CreationDate" not in pdf and b"/ModDate" not in pdf
    assert b"configs: transitive, rock_paper_scissors" in pdf
    png = (out_dir / "reference_solutions.png").read_bytes()
    assert b"Software" not in png and b"prefopt_toy" in png


def test_figure_files_are_reproducible(tmp_path):
    games = ["condorcet_winner"]
    first = run_demo(tmp_path / "a", games=games, stream=io.StringIO())
    second = run_demo(tmp_path / "b", games=games, stream=io.StringIO())
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs between two runs"


@pytest.mark.parametrize("name", list(NAMED_GAMES))
def test_reference_table_structure(name):
    game = named_game(name)
    rows = reference_table(game)
    n = len(game.taus)
    assert [r.solution for r in rows] == (
        ["reference mu"]
        + ["RLHF/DPO optimum"] * n
        + ["IPO optimum"] * n
        + ["regularized Nash"] * n
        + ["Nash equilibrium", "Condorcet winner"]
    )
    assert rows[1].tau == max(game.taus) and rows[n].tau == min(game.taus)
    for r in rows:
        if r.policy is None:
            assert r.solution == "Condorcet winner" and r.exploitability is None
            continue
        assert len(r.policy) == 3 and min(r.policy) >= 0
        assert sum(r.policy) == pytest.approx(1.0, abs=1e-9)
        assert r.exploitability >= -1e-9
    nash = next(r for r in rows if r.solution == "Nash equilibrium")
    assert nash.exploitability == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", list(NAMED_GAMES))
def test_reference_paths_match_the_solvers(name):
    game = named_game(name)
    P, mu = game.preference_matrix(), game.reference_policy()
    taus = [3.0, 0.2, 0.02]
    paths = reference_paths(game, taus)
    for i, tau in enumerate(taus):
        torch.testing.assert_close(paths["RLHF/DPO optimum"][i], rlhf_optimum(P, mu, tau, nu=mu))
        torch.testing.assert_close(paths["IPO optimum"][i], ipo_optimum(P, mu, tau, nu=mu))
        torch.testing.assert_close(paths["regularized Nash"][i], regularized_nash(P, mu, tau))


@pytest.mark.parametrize("name", list(NAMED_GAMES))
def test_reference_table_matches_the_solvers(name):
    game = named_game(name)
    P, mu = game.preference_matrix(), game.reference_policy()
    solvers = {
        "RLHF/DPO optimum": lambda t: rlhf_optimum(P, mu, t, nu=mu),  # one BT fit per beta here
        "IPO optimum": lambda t: ipo_optimum(P, mu, t, nu=mu),
        "regularized Nash": lambda t: regularized_nash(P, mu, t),
    }
    for r in reference_table(game):
        if r.solution in solvers:
            expected = solvers[r.solution](r.tau)
            torch.testing.assert_close(torch.tensor(r.policy, dtype=torch.float64), expected)
            assert r.exploitability == pytest.approx(float(exploitability(P, expected)), abs=1e-12)


def test_reference_table_with_fixed_beta():
    rows = reference_table("transitive", taus=[0.5, 2.0], beta=0.3)
    rlhf = [r for r in rows if r.solution == "RLHF/DPO optimum"]
    assert [r.tau for r in rlhf] == [0.3]
    assert [r.tau for r in rows if r.solution == "IPO optimum"] == [2.0, 0.5]


def test_reference_table_rejects_bad_tau():
    with pytest.raises(ValueError, match="tau"):
        reference_table("transitive", taus=[0.1, -1.0])


def test_format_table_is_aligned():
    text = format_table("condorcet_winner")
    lines = text.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("solution"))
    header, body = lines[header_at], lines[header_at + 1 :]
    assert header.split() == ["solution", "tau", "pi(y0)", "pi(y1)", "pi(y2)", "exploitability"]
    columns = [header.index(c) for c in ["pi(y0)", "pi(y1)", "pi(y2)", "exploitability"]]
    assert len(body) == 1 + 3 * 3 + 2
    for line in body:
        for start in columns:
            assert line[start - 2 : start] == "  " and line[start] != " ", line
        assert re.search(r"  \d\.\d{4}  ", line), line  # policies with 4 decimals
    assert body[-1].startswith("Condorcet winner") and "1.0000  0.0000  0.0000" in body[-1]


def test_format_table_says_none_without_condorcet_winner():
    last = format_table("rock_paper_scissors").splitlines()[-1]
    assert last.split()[:5] == ["Condorcet", "winner", "-", "none", "none"]


# --- the claims each named game is chosen for -------------------------------------------------


def _argmax(pi: torch.Tensor) -> int:
    return int(torch.as_tensor(pi).argmax())


def test_condorcet_game_separates_nash_from_bt_and_ipo():
    game = named_game("condorcet_winner")
    P, mu = game.preference_matrix(), game.reference_policy()
    assert condorcet_winner(P) == 0
    for tau in game.taus:
        assert _argmax(ipo_optimum(P, mu, tau, nu=mu)) == 1
        assert _argmax(rlhf_optimum(P, mu, tau, nu=mu)) == 1
        assert _argmax(rlhf_optimum(P, mu, tau)) == 1  # default nu (uniform) = mu here
    torch.testing.assert_close(
        nash_equilibrium(P), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-7
    )
    # The regularised Nash tends to the Condorcet winner as tau -> 0.
    assert float(regularized_nash(P, mu, 0.01)[0]) > 0.95


def test_transitive_game_agrees_everywhere():
    game = named_game("transitive")
    P, mu = game.preference_matrix(), game.reference_policy()
    assert condorcet_winner(P) == 0
    for tau in game.taus:
        for pi in [
            rlhf_optimum(P, mu, tau, nu=mu),
            ipo_optimum(P, mu, tau, nu=mu),
            regularized_nash(P, mu, tau),
        ]:
            assert pi[0] >= pi[1] >= pi[2]


def test_rock_paper_scissors_nash_is_uniform_and_offline_optima_are_not():
    game = named_game("rock_paper_scissors")
    P, mu = game.preference_matrix(), game.reference_policy()
    assert condorcet_winner(P) is None
    uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
    torch.testing.assert_close(nash_equilibrium(P), uniform, rtol=0, atol=1e-7)
    tau = min(game.taus)
    assert exploitability(P, regularized_nash(P, mu, tau)) < 0.02
    assert exploitability(P, ipo_optimum(P, mu, tau, nu=mu)) > 0.2


def test_three_voter_types_nash_mixes_while_rlhf_picks_y0():
    game = named_game("three_voter_types")
    P, mu = game.preference_matrix(), game.reference_policy()
    eps = dict(game.arguments)["epsilon"]
    assert condorcet_winner(P) is None
    # Munos et al., Sec. 3.2: the Nash equilibrium is (alpha3, alpha2, alpha1).
    expected = torch.tensor([1 / 3 + eps / 2, 1 / 3 + eps / 2, 1 / 3 - eps], dtype=torch.float64)
    torch.testing.assert_close(nash_equilibrium(P), expected, rtol=0, atol=1e-7)
    assert _argmax(rlhf_optimum(P, mu, min(game.taus), nu=mu)) == 0
    assert float(rlhf_optimum(P, mu, min(game.taus), nu=mu)[0]) > 0.99


# --- command line ---------------------------------------------------------------------------


def test_cli_table(capsys):
    assert main(["table", "--game", "condorcet_winner"]) == 0
    out = capsys.readouterr().out
    assert "== condorcet_winner:" in out and "== transitive:" not in out


def test_cli_figures(tmp_path, capsys):
    only = ["--only", "reference_solutions"]  # the dynamics figures: tests/plots/test_figures.py
    assert main(["figures", "--out", str(tmp_path), "--game", "transitive", *only]) == 0
    assert (tmp_path / "reference_solutions.png").stat().st_size > 10_000
    assert "wrote" in capsys.readouterr().out


def test_cli_rejects_unknown_game(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["table", "--game", "chess"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err

"""Figures of the exact dynamics: configs, the command line, reproducible files, and the numbers drawn.

Every figure is built in quick mode (the CI smoke sizes of its config). Assertions about the data
read the drawn artists back by their gid, so they check what a student sees, against independent
formulas or the library's solvers.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from prefopt_toy.__main__ import main
from prefopt_toy.demo import run_demo
from prefopt_toy.dynamics import ALGORITHMS, FIXED_POINTS
from prefopt_toy.games.named import named_game
from prefopt_toy.plots import experiments
from prefopt_toy.plots.draw import save_figure
from prefopt_toy.plots.experiments import EXPERIMENTS, TRAJECTORIES, experiment
from prefopt_toy.plots.figures import FIGURES, figure_configs, write_figures
from prefopt_toy.policies import kl
from prefopt_toy.simplex import cartesian_to_barycentric
from prefopt_toy.solutions.bt import bt_fit
from prefopt_toy.solutions.nash import nash_equilibrium
from prefopt_toy.solutions.optima import ipo_optimum, rlhf_optimum
from prefopt_toy.solutions.regularized import ipo_md_fixed_point, regularized_nash

DYNAMICS = [name for name in FIGURES if name != "reference_solutions"]
README = Path(__file__).resolve().parents[2] / "figures" / "README.md"


@pytest.fixture(scope="module")
def built() -> dict[str, Figure]:
    """Every dynamics figure, built once in quick mode."""
    return {name: FIGURES[name](EXPERIMENTS[name], quick=True) for name in DYNAMICS}


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory) -> Path:
    """The output folder of ``python -m prefopt_toy figures --quick``."""
    out = tmp_path_factory.mktemp("figures")
    assert main(["figures", "--quick", "--out", str(out)]) == 0
    return out


def artists(fig: Figure, gid: str) -> list:
    found = [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]
    assert found, f"no artist with gid {gid!r}"
    return found


def artist(fig: Figure, gid: str):
    found = artists(fig, gid)
    assert len(found) == 1, f"expected one artist with gid {gid!r}, found {len(found)}"
    return found[0]


def simplex_points(fig: Figure, gid: str) -> torch.Tensor:
    """The policies (N, 3) behind a line drawn on a simplex (every copy must agree)."""
    copies = [
        cartesian_to_barycentric(np.column_stack([line.get_xdata(), line.get_ydata()]))
        for line in artists(fig, gid)
    ]
    for other in copies[1:]:
        torch.testing.assert_close(other, copies[0], atol=0, rtol=0)
    return copies[0]


# --- configs and registry -----------------------------------------------------------------------


def test_every_figure_has_a_config_and_a_function():
    assert list(FIGURES) == list(EXPERIMENTS)
    for name, config in EXPERIMENTS.items():
        assert config.name == name
        assert experiment(name) is config
        assert "quick" in inspect.signature(FIGURES[name]).parameters


def test_unknown_experiment_is_a_clear_error():
    with pytest.raises(ValueError, match="valid names: reference_solutions"):
        experiment("nope")
    with pytest.raises(ValueError, match="unknown figure 'nope'"):
        write_figures("unused", only=["nope"])


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_configs_are_frozen(name):
    config = EXPERIMENTS[name]
    assert dataclasses.is_dataclass(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.name = "changed"  # type: ignore[misc]
    hash(config)  # frozen and made of tuples: usable as a cache key


def test_config_classes_document_every_field():
    tree = ast.parse(inspect.getsource(experiments))
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert {c.name for c in classes} >= {type(c).__name__ for c in EXPERIMENTS.values()}
    for cls in classes:
        assert ast.get_docstring(cls), f"{cls.name} has no docstring"
        body = cls.body
        for i, node in enumerate(body):
            if isinstance(node, ast.AnnAssign):
                doc = body[i + 1] if i + 1 < len(body) else None
                assert (
                    isinstance(doc, ast.Expr)
                    and isinstance(doc.value, ast.Constant)
                    and isinstance(doc.value.value, str)
                ), f"{cls.name}.{node.target.id} has no docstring"


def test_trajectories_config_names_real_algorithms():
    drawn = {a for group in TRAJECTORIES.algorithm_groups for a in group}
    assert set(experiments.CORE_ALGORITHMS) <= drawn <= set(ALGORITHMS)
    assert {"transitive", "condorcet_winner"} <= set(TRAJECTORIES.games)
    assert {"rock_paper_scissors", "three_voter_types"} & set(TRAJECTORIES.games)


def test_readme_lists_every_figure():
    text = README.read_text()
    for name in FIGURES:
        assert f"`{name}.png`" in text and f"--only {name}" in text
        function = FIGURES[name]
        assert f"{function.__module__}.{function.__name__}" in text
        assert (
            f"experiments.{type(EXPERIMENTS[name]).__name__}" in text
            or name == "reference_solutions"
        )


# --- files: the command line, sizes, reproducibility --------------------------------------------


def test_cli_writes_every_figure(cli_dir):
    for name in FIGURES:
        png, pdf = cli_dir / f"{name}.png", cli_dir / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 40_000, f"{png.name} looks empty"
        assert pdf.read_bytes()[:5] == b"%PDF-"
        assert pdf.stat().st_size > 10_000, f"{pdf.name} looks empty"


def test_metadata_names_the_config(cli_dir):
    pdf = (cli_dir / "tau_path.pdf").read_bytes()
    assert b"experiments.tau_path [quick]" in pdf
    assert b"/CreationDate" not in pdf and b"/ModDate" not in pdf


@pytest.mark.parametrize("name", DYNAMICS)
def test_files_are_reproducible(name, built, cli_dir, tmp_path):
    # Two independent builds (the fixture's and the command line's) save to identical bytes.
    config = EXPERIMENTS[name]
    for path in save_figure(built[name], tmp_path / name, configs=figure_configs(config, True)):
        assert path.read_bytes() == (cli_dir / path.name).read_bytes(), f"{path.name} differs"


def test_cli_only_and_rejects_unknown(tmp_path, capsys):
    assert (
        main(["figures", "--quick", "--only", "nash_md_convergence", "--out", str(tmp_path)]) == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "nash_md_convergence.pdf",
        "nash_md_convergence.png",
    ]
    assert f"wrote {tmp_path / 'nash_md_convergence.png'}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["figures", "--only", "nope"])
    assert exit_info.value.code == 2


def test_run_demo_can_add_dynamics_figures(tmp_path):
    stream = io.StringIO()
    paths = run_demo(
        tmp_path, games=["transitive"], stream=stream, figures=["nash_md_convergence"], quick=True
    )
    assert [p.name for p in paths] == ["nash_md_convergence.png", "nash_md_convergence.pdf"]
    assert "== transitive:" in stream.getvalue()


# --- the numbers drawn ----------------------------------------------------------------------------


def test_trajectories_start_at_mu_and_mark_the_targets(built):
    fig, tau = built["trajectories"], TRAJECTORIES.tau
    for name in TRAJECTORIES.games:
        game = named_game(name)
        P, mu = game.preference_matrix(), game.reference_policy()
        for algorithm in experiments.CORE_ALGORITHMS:
            path = simplex_points(fig, f"{algorithm}:{name}")
            torch.testing.assert_close(path[0], mu, atol=1e-9, rtol=0)
        marks = {
            "RLHF/DPO optimum": rlhf_optimum(P, mu, tau, nu=mu),
            "IPO optimum": ipo_optimum(P, mu, tau),
            "regularized Nash": regularized_nash(P, mu, tau),
            "IPO-MD fixed point": ipo_md_fixed_point(P, mu, tau, 0.125),
        }
        for target, expected in marks.items():
            drawn = simplex_points(fig, f"{target}:{name}")[0]
            torch.testing.assert_close(drawn, expected, atol=1e-9, rtol=0)


def test_trajectories_config_runs_long_enough_to_converge():
    # The full-size figure claims that the trajectories reach their targets: check the config's
    # steps on every game, for every algorithm with a known fixed point.
    games = [named_game(g) for g in TRAJECTORIES.games]
    P = torch.stack([g.preference_matrix() for g in games])
    mu = torch.stack([g.reference_policy() for g in games])
    for algorithm in experiments.CORE_ALGORITHMS:
        target = FIXED_POINTS[algorithm]
        if target is None:
            continue
        run = ALGORITHMS[algorithm](
            P,
            mu,
            steps=TRAJECTORIES.steps,
            tau=TRAJECTORIES.tau,
            **TRAJECTORIES.hyper_for(algorithm),
        )
        gap = run.distance_to(target)[:, -1]
        assert float(gap.max()) < 0.02, f"{algorithm} ends {gap.tolist()} from its {target}"


def test_tau_path_limits(built):
    fig, config = built["tau_path"], experiments.TAU_PATH
    for name in config.games:
        game = named_game(name)
        P, mu = game.preference_matrix(), game.reference_policy()
        nash = simplex_points(fig, f"regularized nash path:{name}")
        rlhf = simplex_points(fig, f"rlhf path:{name}")
        # The drawn path runs from tau_max to tau_min and is the library's solution there.
        torch.testing.assert_close(
            nash[-1], regularized_nash(P, mu, config.tau_min), atol=1e-9, rtol=0
        )
        torch.testing.assert_close(
            rlhf[0], rlhf_optimum(P, mu, config.tau_max, nu=mu), atol=1e-9, rtol=0
        )
        # RLHF/DPO ends on the BT argmax (fitted on pairs from mu), almost deterministically.
        bt_argmax = int(bt_fit(P, mu).argmax())
        assert int(rlhf[-1].argmax()) == bt_argmax and float(rlhf[-1, bt_argmax]) > 0.99
        tv = artist(fig, f"tv regularized nash to nash:{name}").get_ydata()
        assert tv[-1] < 1e-2
        # The distance curves are 0.5 * ||path - limit||_1 of the drawn paths, at the drawn taus.
        vertex = torch.nn.functional.one_hot(torch.tensor(bt_argmax), 3).double()
        limits = {
            "tv regularized nash to nash": (nash, nash_equilibrium(P)),
            "tv rlhf to bt argmax": (rlhf, vertex),
            "tv rlhf to nash": (rlhf, nash_equilibrium(P)),
        }
        for gid, (path, limit) in limits.items():
            curve = artist(fig, f"{gid}:{name}")
            np.testing.assert_allclose(curve.get_xdata(), np.geomspace(10.0, 1e-3, len(path)))
            expected = 0.5 * (path - limit).abs().sum(-1)
            np.testing.assert_allclose(curve.get_ydata(), expected.numpy(), rtol=0, atol=1e-9)
    voters = simplex_points(fig, "regularized nash path:three_voter_types")[-1]
    P = named_game("three_voter_types").preference_matrix()
    assert float((voters - nash_equilibrium(P)).abs().max()) < 1e-2
    # Condorcet winner y0, but RLHF/DPO picks the Borda/BT winner y1.
    assert int(simplex_points(fig, "regularized nash path:condorcet_winner")[-1].argmax()) == 0
    assert int(simplex_points(fig, "rlhf path:condorcet_winner")[-1].argmax()) == 1


def test_nash_md_convergence_under_bound_and_plateaus(built):
    fig, config = built["nash_md_convergence"], experiments.NASH_MD_CONVERGENCE
    game = named_game(config.game)
    P, mu = game.preference_matrix(), game.reference_policy()
    for tau in config.taus:
        schedule = artist(fig, f"schedule:{tau:g}")
        bound = artist(fig, f"bound:{tau:g}")
        T = np.asarray(schedule.get_xdata())
        np.testing.assert_allclose(bound.get_ydata(), 8.0 / (tau**2 * (T + 1.0)), rtol=1e-12)
        assert np.all(np.asarray(schedule.get_ydata()) <= bound.get_ydata())  # Theorem 1
        for m in config.constant_eta_tau:
            plateau = artist(fig, f"plateau:{tau:g}:{m:g}").get_ydata()[0]
            star = regularized_nash(P, mu, tau)
            assert plateau == pytest.approx(kl(star, ipo_md_fixed_point(P, mu, tau, m)), rel=1e-9)
    # With eta * tau = 0.1 at tau = 1 the constant step reaches its plateau within the quick run,
    # and stays above the decaying schedule there.
    constant = artist(fig, "constant:1:0.1").get_ydata()
    plateau = artist(fig, "plateau:1:0.1").get_ydata()[0]
    assert constant[-1] == pytest.approx(plateau, rel=1e-3)
    assert artist(fig, "schedule:1").get_ydata()[-1] < plateau


def test_ipo_toy_two_actions(built):
    fig = built["ipo_toy"]
    curve = artist(fig, "two_action_ipo")
    tau = np.asarray(curve.get_xdata())
    sigmoid = 1.0 / (1.0 + np.exp(-0.5 / tau))  # Azar et al. Sec. 5.3.1, independent of the library
    np.testing.assert_allclose(curve.get_ydata(), sigmoid, rtol=0, atol=1e-12)
    runs = artist(fig, "two_action_ipo_run")
    run_tau = np.asarray(runs.get_xdata())
    np.testing.assert_allclose(runs.get_ydata(), 1.0 / (1.0 + np.exp(-0.5 / run_tau)), atol=1e-6)
    dpo = np.asarray(artist(fig, "two_action_dpo_run").get_ydata())
    assert np.all(dpo >= np.asarray(runs.get_ydata()) - 1e-12)  # DPO runs past IPO towards 1
    assert dpo[0] > 0.999


def test_ipo_toy_d1_matches_the_worked_examples(built):
    fig = built["ipo_toy"]
    # Exact minimisers of Eq. (17) on D1, uniform mu: pi ~ (e^{2/(3 tau)}, e^{1/(3 tau)}, 1).
    table = {0.1: (0.964370, 0.034403, 0.001227), 1.0: (0.448441, 0.321322, 0.230237)}
    curves = [artist(fig, f"d1_ipo:{a}") for a in "abc"]
    tau = np.asarray(curves[0].get_xdata())
    for t, expected in table.items():
        i = int(np.argmin(np.abs(np.log(tau / t))))
        assert tau[i] == pytest.approx(t, rel=1e-12)
        drawn = [float(c.get_ydata()[i]) for c in curves]
        np.testing.assert_allclose(drawn, expected, atol=1e-6)
    # pi(a) falls with tau, and DPO's drawn limit is (1, 0, 0).
    assert np.all(np.diff(curves[0].get_ydata()) < 0)
    limits = [artist(fig, f"d1_dpo_limit:{a}").get_ydata()[0] for a in "abc"]
    assert limits == [1.0, 0.0, 0.0]
    # The sampled protocol is drawn, with a 95% interval for every action and tau.
    config = experiments.IPO_TOY
    for loss in ("ipo", "dpo"):
        for a in "abc":
            means = artist(fig, f"d1_{loss}_sampled:{a}")
            np.testing.assert_allclose(means.get_xdata(), config.sampled_taus)
            intervals = artist(fig, f"d1_{loss}_sampled_ci:{a}").get_segments()
            assert len(intervals) == len(config.sampled_taus)
            for (lo, hi), y in zip(intervals, means.get_ydata()):
                assert lo[1] <= y <= hi[1]  # each interval brackets its mean


def test_ipo_toy_exact_d1_runs_reach_the_closed_form():
    # Full-size exact runs (Adam on the full data set) land on the closed-form minimiser: the
    # figure's D1 curve (ipo_optimum of the empirical game) and the data-set dynamics agree.
    from prefopt_toy.plots.ipo_toy import ipo_toy_data

    config = dataclasses.replace(experiments.IPO_TOY, run_taus=(0.1, 1.0), sampled_taus=())
    data = ipo_toy_data(config)
    assert data["sampled_taus"] is None
    tau = data["curve_taus"]
    for row, t in enumerate(config.run_taus):
        i = int(torch.argmin((tau.log() - math.log(t)).abs()))
        torch.testing.assert_close(data["d1_ipo_run"][row], data["d1_ipo"][i], atol=1e-4, rtol=0)
        assert float(data["d1_dpo_run"][row, 0]) > 0.99

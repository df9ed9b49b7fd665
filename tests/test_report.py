"""``jaxseq report`` on synthetic run folders with known scores: rliable's numbers on the same
matrix, the probability of improvement, the plots and the marl-eval layout; sweep folders and their
points as one row per grid point; the scales of the tasks and when the optimality gap is reported;
arguments refused before any work."""

import json

import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics

from jaxseq.cli import main
from jaxseq.errors import ConfigError
from jaxseq.report import (
    AGGREGATES,
    marl_eval_json,
    parse_score_ranges,
    read_run,
    report,
    score_matrices,
    seeded_numpy,
)


def _run_folder(root, name, algo, env, finals, absolute=None, win=False, **config):
    """A finished run folder: two evaluations per seed, the last at ``finals`` (win rates with
    ``win``, else returns); ``config``: more config.json fields."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"algo": algo, "env": env, **config}))
    finals = list(finals)
    key = "test_win_rate_per_seed" if win else "test_return_per_seed"
    rows = [
        {"chunk": 1, "env_steps": 1000, key: [f / 2 for f in finals]},
        {"chunk": 2, "env_steps": 2000, key: finals},
    ]
    if not win:
        rows[0][key] = [f - 1.0 for f in finals]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"final_test_return_per_seed": finals, "final_test_win_rate_per_seed": finals if win else None}
    if absolute is not None:
        summary["absolute_test_return_per_seed"] = list(absolute)
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def _sweep_folder(root, name, algo, env, field, values, finals_per_point):
    """A sweep's run folder as sweep_folder.py writes it: the pooled metrics of every member, and
    ``points/NNN/`` per value of ``field``, each a run folder whose config sets the value."""
    pooled = [f for finals in finals_per_point for f in finals]
    run = _run_folder(root, name, algo, env, pooled, sweep=[[field, list(values)]])
    for i, (value, finals) in enumerate(zip(values, finals_per_point)):
        _run_folder(run / "points", f"{i:03d}", algo, env, finals, sweep=[], **{field: value})
    return run


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(0)
    low, high = rng.normal(0.0, 1.0, 5), rng.normal(10.0, 1.0, 5)
    return (
        [
            _run_folder(tmp_path, "a", "mappo", "mpe:spread", low),
            _run_folder(tmp_path, "b", "a2po", "mpe:spread", high, absolute=high + 0.5),  # the absolute metric counts
            _run_folder(tmp_path, "c", "mappo_copy", "mpe:spread", low),
        ],
        low,
        high + 0.5,
    )


def test_aggregates_and_intervals_are_rliables_on_the_same_matrix(runs, tmp_path):
    dirs, low, high = runs
    result = report([str(d) for d in dirs], tmp_path / "out", reps=500)
    # in the report's (sorted) order, so the bootstrap draws the same resamples for each algorithm
    want = {"a2po": high[:, None], "mappo": low[:, None], "mappo_copy": low[:, None]}

    def func(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x)])

    # The report draws its resamples from seed 0: the same draws as rliable's own call with that seed.
    with seeded_numpy(0):
        points, intervals = rly.get_interval_estimates(want, func, reps=500)
    for algo in want:
        assert "Optimality gap" not in result["aggregates"][algo]  # returns have no known range
        for i, name in enumerate(AGGREGATES[:3]):
            p, lo, hi = result["aggregates"][algo][name]
            assert p == pytest.approx(points[algo][i], rel=1e-12)
            assert (lo, hi) == pytest.approx((intervals[algo][0, i], intervals[algo][1, i]), rel=1e-12), (algo, name)
    poi = result["probability_of_improvement"]
    assert poi["a2po > mappo"][0] == 1.0 and poi["mappo > a2po"][0] == 0.0  # dominated
    assert poi["mappo > mappo_copy"][0] == 0.5  # identical scores
    for name in ("report.md", "report.json", "performance_profile.png", "sample_efficiency.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name


def test_the_final_greedy_evaluation_is_a_score_of_its_own(runs, tmp_path, capsys):
    dirs, low, high = runs
    absolute = report([str(dirs[1])], tmp_path / "absolute", reps=50)
    final = report([str(dirs[1])], tmp_path / "final", reps=50, score="final")
    # a2po's folder holds the absolute metric (high) and its final evaluation 0.5 below it
    assert absolute["aggregates"]["a2po"]["Mean"][0] == pytest.approx(np.mean(high))
    assert final["aggregates"]["a2po"]["Mean"][0] == pytest.approx(np.mean(high - 0.5))
    assert final["score"] == "the final greedy evaluation" and "absolute metric" in absolute["score"]
    assert main(["report", str(dirs[1]), "--out", str(tmp_path / "cli"), "--reps", "50", "--score", "final"]) == 0
    assert "Score per seed: the final greedy evaluation." in capsys.readouterr().out
    with pytest.raises(ConfigError, match="score: 'best' is not allowed"):
        report([str(dirs[1])], tmp_path / "bad", score="best")


def test_tasks_of_different_scales_are_normalised_per_task(tmp_path):
    dirs = [
        _run_folder(tmp_path, "a1", "x", "mpe:spread", [0.0, 1.0]),
        _run_folder(tmp_path, "a2", "x", "smax:3m", [100.0, 300.0]),
        _run_folder(tmp_path, "b1", "y", "mpe:spread", [2.0, 3.0]),
        _run_folder(tmp_path, "b2", "y", "smax:3m", [200.0, 500.0]),
    ]
    matrices, tasks = score_matrices([read_run(d) for d in dirs])
    assert tasks == ["mpe:spread", "smax:3m"]
    np.testing.assert_allclose(matrices["x"], [[0.0, 0.0], [1 / 3, 0.5]])
    np.testing.assert_allclose(matrices["y"], [[2 / 3, 0.25], [1.0, 1.0]])


def test_marl_eval_export_follows_its_layout(runs, tmp_path):
    dirs, _, high = runs
    data = marl_eval_json([read_run(d) for d in dirs])
    algos = data["mpe"]["spread"]
    assert sorted(algos) == ["a2po", "mappo", "mappo_copy"]
    seeds = algos["a2po"]
    assert sorted(seeds) == [f"seed_{i}" for i in range(5)]
    run = seeds["seed_0"]
    assert run["step_0"] == {"step_count": 1000, "return": [pytest.approx(high[0] - 1.5)]}
    assert run["step_1"]["step_count"] == 2000 and run["absolute_metrics"] == {"return": [pytest.approx(high[0])]}
    assert "absolute_metrics" not in algos["mappo"]["seed_0"]
    # the same steps and metrics in every run, as marl-eval's checker requires
    shapes = {
        (tuple(sorted(r)), tuple(sorted(r["step_1"])))
        for a in algos.values()
        for r in a.values()
        if "absolute_metrics" not in r
    }
    assert len(shapes) == 1
    assert (
        main(
            [
                "report",
                *map(str, dirs),
                "--out",
                str(tmp_path / "cli"),
                "--reps",
                "200",
                "--marl-eval",
                str(tmp_path / "me.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "me.json").read_text()) == json.loads(json.dumps(data))


def test_report_errors_are_clear(tmp_path, runs):
    dirs, _, _ = runs
    with pytest.raises(ConfigError, match="not a finished run folder"):
        report([str(tmp_path / "nowhere")], tmp_path / "out")
    extra = _run_folder(tmp_path, "d", "a2po", "mpe:spread", [1.0])
    with pytest.raises(ConfigError, match="same number of seeds"):
        report([str(d) for d in dirs] + [str(extra)], tmp_path / "out")
    with pytest.raises(ConfigError, match="one label per run folder"):
        report([str(d) for d in dirs], tmp_path / "out", labels=["x"])


def test_a_sweep_folder_is_one_row_per_grid_point(tmp_path):
    sweep = _sweep_folder(tmp_path, "s", "a2po", "mpe:spread", "actor_lr", [0.001, 0.01], [[1.0, 2.0], [5.0, 7.0]])
    other = _run_folder(tmp_path, "m", "mappo", "mpe:spread", [3.0, 4.0])
    result = report([str(sweep), str(other)], tmp_path / "out", reps=50, marl_eval=tmp_path / "me.json")
    assert result["seeds_per_task"] == {"a2po actor_lr=0.001": 2, "a2po actor_lr=0.01": 2, "mappo": 2}
    means = {a: aggs["Mean"][0] for a, aggs in result["aggregates"].items()}
    assert means == {"a2po actor_lr=0.001": 1.5, "a2po actor_lr=0.01": 6.0, "mappo": 3.5}  # each point's own seeds
    me = json.loads((tmp_path / "me.json").read_text())["mpe"]["spread"]
    assert sorted(me) == ["a2po actor_lr=0.001", "a2po actor_lr=0.01", "mappo"]  # as write_marl_eval labels them
    labelled = report([str(sweep)], tmp_path / "labelled", ["mine"], reps=50)
    assert sorted(labelled["aggregates"]) == ["mine actor_lr=0.001", "mine actor_lr=0.01"]


def test_a_sweeps_point_folders_are_labelled_by_their_values(tmp_path):
    sweep = _sweep_folder(tmp_path, "s", "a2po", "mpe:spread", "actor_lr", [0.001, 0.01], [[1.0, 2.0], [5.0, 7.0]])
    points = sorted(str(p) for p in (sweep / "points").iterdir())
    result = report(points, tmp_path / "out", reps=50)
    assert {a: aggs["Mean"][0] for a, aggs in result["aggregates"].items()} == {
        "a2po actor_lr=0.001": 1.5,
        "a2po actor_lr=0.01": 6.0,
    }
    assert read_run(sweep / "points" / "001").algo == "a2po actor_lr=0.01"
    assert read_run(sweep / "points" / "001", "given").algo == "given"  # a label still wins


def test_a_folder_given_twice_is_refused(tmp_path, runs):
    dirs, _, _ = runs
    for twice in ([dirs[0], dirs[0]], [dirs[0], dirs[1], tmp_path / "b" / ".." / "a"]):
        with pytest.raises(ConfigError, match=r"a is given twice"):
            report([str(d) for d in twice], tmp_path / "out", reps=50)
    sweep = _sweep_folder(tmp_path, "s", "a2po", "mpe:spread", "actor_lr", [0.001, 0.01], [[1.0, 2.0], [5.0, 7.0]])
    with pytest.raises(ConfigError, match=r"points/001 is given twice"):
        report([str(sweep), str(sweep / "points" / "001")], tmp_path / "out", reps=50)
    assert not (tmp_path / "out").exists()


def test_min_max_normalisation_without_spread_is_refused(tmp_path):
    dirs = [
        _run_folder(tmp_path, "a", "x", "mpe:spread?n=5", [1.23]),
        _run_folder(tmp_path, "b", "x", "smax:3m", [4.0]),
    ]
    with pytest.raises(ConfigError, match=r"on task mpe:spread\?n=5 every score is 1.23; on task smax:3m every score"):
        report([str(d) for d in dirs], tmp_path / "out", reps=50)
    assert not (tmp_path / "out").exists()
    # with the ranges known, the scores are normalised by them and the optimality gap is reported
    ranges = {"mpe:spread?n=5": (0.0, 2.0), "smax:3m": (0.0, 8.0)}
    result = report([str(d) for d in dirs], tmp_path / "out", reps=50, score_ranges=ranges)
    assert result["aggregates"]["x"]["Mean"][0] == pytest.approx((1.23 / 2 + 0.5) / 2)
    assert result["aggregates"]["x"]["Optimality gap"][0] == pytest.approx(1 - (1.23 / 2 + 0.5) / 2)


def test_the_optimality_gap_only_for_scores_of_a_known_range(tmp_path, capsys):
    returns = [
        _run_folder(tmp_path, "r1", "x", "mpe:spread", [-28.0, -30.0]),
        _run_folder(tmp_path, "r2", "y", "mpe:spread", [-25.0, -29.0]),
    ]
    result = report([str(d) for d in returns], tmp_path / "returns", reps=50)
    assert all(set(aggs) == {"IQM", "Median", "Mean"} for aggs in result["aggregates"].values())
    md = (tmp_path / "returns" / "report.md").read_text()
    assert "Optimality gap |" not in md and "No optimality gap: it needs scores of a known range" in md
    # win rates: range [0, 1], the gap at threshold 1 as rliable computes it
    wins = [
        _run_folder(tmp_path, "w1", "x", "smax:3m", [0.2, 0.9], win=True),
        _run_folder(tmp_path, "w2", "y", "smax:3m", [0.5, 1.0], win=True),
    ]
    result = report([str(d) for d in wins], tmp_path / "wins", reps=50)
    assert result["aggregates"]["x"]["Optimality gap"][0] == pytest.approx(
        metrics.aggregate_optimality_gap(np.array([[0.2], [0.9]]))
    )
    assert "| Optimality gap |" in (tmp_path / "wins" / "report.md").read_text()
    # --score-range on the returns: normalised by it, with the gap
    args = ["report", *map(str, returns), "--out", str(tmp_path / "cli"), "--reps", "50"]
    assert main(args + ["--score-range", "mpe:spread=-40,-20"]) == 0
    result = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert result["aggregates"]["y"]["Mean"][0] == pytest.approx((0.75 + 0.55) / 2)
    assert result["aggregates"]["y"]["Optimality gap"][0] == pytest.approx(1 - (0.75 + 0.55) / 2)
    assert "normalised by its score range [-40, -20]" in capsys.readouterr().out
    assert parse_score_ranges(["mpe:spread?n=5=-60,-20"]) == {"mpe:spread?n=5": (-60.0, -20.0)}
    for bad in (["mpe:spread=1"], ["mpe:spread=a,b"], ["mpe:spread=0,1", "mpe:spread=0,2"]):
        with pytest.raises(ConfigError, match="score_range"):
            parse_score_ranges(bad)
    with pytest.raises(ConfigError, match="score_range: mpe:spread: needs finite MIN < MAX"):
        report([str(d) for d in returns], tmp_path / "x", score_ranges={"mpe:spread": (1.0, 1.0)})
    with pytest.raises(ConfigError, match="no run is on task smax:3m"):
        report([str(d) for d in returns], tmp_path / "x", score_ranges={"smax:3m": (0.0, 1.0)})


def test_bad_arguments_are_one_line_errors_before_any_work(tmp_path, runs, capsys):
    dirs, _, _ = runs
    (tmp_path / "file").write_text("")
    nowhere = str(tmp_path / "nowhere")  # read first, it would be "not a finished run folder"
    cases = {
        "out": ["--out", str(tmp_path / "file")],
        "reps": ["--out", str(tmp_path / "o"), "--reps", "0"],
        "marl_eval": ["--out", str(tmp_path / "o"), "--marl-eval", str(tmp_path / "typo" / "me.json")],
    }
    for field, args in cases.items():
        assert main(["report", nowhere, *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"jaxseq: error: {field}: ") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists() and not (tmp_path / "typo").exists()
    with pytest.raises(ConfigError, match="reps: must be a positive integer, got -3"):
        report([nowhere], tmp_path / "o", reps=-3)
    # --marl-eval inside the --out folder that the report creates is fine
    assert (
        main(
            [
                "report",
                *map(str, dirs),
                "--out",
                str(tmp_path / "o"),
                "--reps",
                "50",
                "--marl-eval",
                str(tmp_path / "o" / "me.json"),
            ]
        )
        == 0
    )
    assert (tmp_path / "o" / "me.json").is_file()


def test_one_seed_per_row_reports_without_intervals_to_speak_of(tmp_path):
    dirs = [_run_folder(tmp_path, "a", "x", "mpe:spread", [1.0]), _run_folder(tmp_path, "b", "y", "mpe:spread", [2.0])]
    result = report([str(d) for d in dirs], tmp_path / "out", reps=50)
    assert result["aggregates"]["y"]["IQM"] == (2.0, 2.0, 2.0)
    assert result["probability_of_improvement"]["y > x"][0] == 1.0

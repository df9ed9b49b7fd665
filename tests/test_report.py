"""``jaxseq report`` on synthetic run folders with known scores: rliable's numbers on the same
matrix, the probability of improvement, the plots and the marl-eval layout."""

import json

import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics

from jaxseq.cli import main
from jaxseq.errors import ConfigError
from jaxseq.report import AGGREGATES, marl_eval_json, read_run, report, score_matrices, seeded_numpy


def _run_folder(root, name, algo, env, finals, absolute=None):
    """A finished run folder: two evaluations per seed, the last at ``finals``."""
    run = root / name
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"algo": algo, "env": env}))
    finals = list(finals)
    rows = [
        {"chunk": 1, "env_steps": 1000, "test_return_per_seed": [f - 1.0 for f in finals]},
        {"chunk": 2, "env_steps": 2000, "test_return_per_seed": finals},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"final_test_return_per_seed": finals, "final_test_win_rate_per_seed": None}
    if absolute is not None:
        summary["absolute_test_return_per_seed"] = list(absolute)
    (run / "summary.json").write_text(json.dumps(summary))
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
        return np.array(
            [
                metrics.aggregate_iqm(x),
                metrics.aggregate_median(x),
                metrics.aggregate_mean(x),
                metrics.aggregate_optimality_gap(x),
            ]
        )

    # The report draws its resamples from seed 0: the same draws as rliable's own call with that seed.
    with seeded_numpy(0):
        points, intervals = rly.get_interval_estimates(want, func, reps=500)
    for algo in want:
        for i, name in enumerate(AGGREGATES):
            p, lo, hi = result["aggregates"][algo][name]
            assert p == pytest.approx(points[algo][i], rel=1e-12)
            assert (lo, hi) == pytest.approx((intervals[algo][0, i], intervals[algo][1, i]), rel=1e-12), (algo, name)
    poi = result["probability_of_improvement"]
    assert poi["a2po > mappo"][0] == 1.0 and poi["mappo > a2po"][0] == 0.0  # dominated
    assert poi["mappo > mappo_copy"][0] == 0.5  # identical scores
    for name in ("report.md", "report.json", "performance_profile.png", "sample_efficiency.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name


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

"""Aggregate results the way the field reports them: ``python -m jaxseq report RUN_DIR... --out DIR``.

Every seed of every run folder is one independent run. Its score on a task is its absolute metric
(the best checkpoint re-evaluated on 10x the episodes, ``summary.json``) where the run has one,
else its final greedy evaluation: the win rate on envs that have one, else the return. Scores
are min-max normalised per task over every run given (the lowest score maps to 0, the highest to
1) when the tasks differ, so that tasks of different scales can be aggregated; one task stays in
its own units.

The aggregates come from ``rliable`` (Agarwal et al. 2021): IQM, median, mean and optimality gap
with 95% stratified bootstrap intervals, the probability of improvement of every ordered pair of
algorithms, performance profiles, and IQM sample-efficiency curves over the evaluation steps.
``--marl-eval FILE`` writes the runs in marl-eval's JSON layout (Gorsane et al. 2022):
``{env: {task: {algo: {"seed_k": {"step_i": {"step_count", metrics...}, "absolute_metrics": {...}}}}}}``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxseq.errors import ConfigError
from jaxseq.plotting import read_jsonl

AGGREGATES = ("IQM", "Median", "Mean", "Optimality gap")


@dataclasses.dataclass(frozen=True)
class RunScores:
    """One run folder: its algorithm label, task, metric and per-seed scores, and its evaluation curve."""

    algo: str
    env: str
    metric: str
    scores: np.ndarray  # [S]
    steps: np.ndarray  # [K] env steps of the evaluations
    curve: np.ndarray  # [K, S] the evaluation metric per seed
    absolute: dict  # metric name -> per-seed values, from summary.json ({} without an absolute metric)


def read_run(run_dir: Path | str, label: str | None = None) -> RunScores:
    """The scores of one finished run folder (``label`` overrides its algorithm name)."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
        rows = read_jsonl(run_dir / "metrics.jsonl")
    except (OSError, ValueError) as err:
        raise ConfigError("report", f"{run_dir} is not a finished run folder ({err})") from None
    has_win = summary.get("final_test_win_rate_per_seed") is not None
    scores = scores_from_rows(label or config["algo"], config["env"], has_win, rows, absolute_per_seed(summary))
    if scores is None:
        raise ConfigError("report", f"{run_dir} has no greedy evaluation (eval_every was 0?)")
    return scores


def absolute_per_seed(summary: dict) -> dict:
    """{"return": [S], "win_rate": [S]} of the absolute metric in a run's summary (those it has)."""
    names = {"return": "absolute_test_return_per_seed", "win_rate": "absolute_test_win_rate_per_seed"}
    return {name: summary[key] for name, key in names.items() if summary.get(key)}


def scores_from_rows(algo: str, env: str, has_win: bool, rows: list[dict], absolute: dict) -> RunScores | None:
    """A run's scores from its metrics rows (``absolute``: metric name -> per-seed values of the
    absolute metric, or {}); None when no row holds an evaluation. The score per seed is the
    absolute metric where there is one, else the last evaluation."""
    metric, per_seed = (
        ("test_win_rate", "test_win_rate_per_seed") if has_win else ("test_return_mean", "test_return_per_seed")
    )
    evaluated = [r for r in rows if r.get(per_seed)]
    if not evaluated:
        return None
    curve = np.array([[np.nan if v is None else v for v in r[per_seed]] for r in evaluated], np.float64)
    key = "win_rate" if has_win else "return"
    scores = np.asarray(absolute.get(key, curve[-1]), np.float64)
    return RunScores(algo, env, metric, scores, np.array([r["env_steps"] for r in evaluated]), curve, absolute)


def score_matrices(runs: list[RunScores]) -> tuple[dict[str, np.ndarray], list[str]]:
    """{algo: [runs, tasks]} of normalised scores, and the task order. Runs of one algorithm and
    task are pooled (their seeds stack); every algorithm needs the same number of runs on every task."""
    tasks = sorted({r.env for r in runs})
    algos = sorted({r.algo for r in runs})
    pooled = {
        (a, t): np.concatenate([r.scores for r in runs if r.algo == a and r.env == t] or [np.empty(0)])
        for a in algos
        for t in tasks
    }
    counts = {k: len(v) for k, v in pooled.items()}
    if min(counts.values()) == 0 or len(set(counts.values())) > 1:
        raise ConfigError("report", f"every algorithm needs the same number of seeds on every task; got {counts}")
    if len(tasks) > 1:
        for t in tasks:
            values = np.concatenate([pooled[(a, t)] for a in algos])
            low, high = np.nanmin(values), np.nanmax(values)
            for a in algos:
                pooled[(a, t)] = (pooled[(a, t)] - low) / (high - low if high > low else 1.0)
    return {a: np.stack([pooled[(a, t)] for t in tasks], axis=1) for a in algos}, tasks


@contextlib.contextmanager
def seeded_numpy(seed: int):
    """NumPy's global generator seeded with ``seed`` inside, restored after. rliable 1.2's
    stratified bootstrap draws its resamples from ``np.random.choice`` and ignores its
    ``random_state`` argument, so this is how its intervals are made reproducible."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _aggregate(x: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array(
        [
            metrics.aggregate_iqm(x),
            metrics.aggregate_median(x),
            metrics.aggregate_mean(x),
            metrics.aggregate_optimality_gap(x),
        ]
    )


def aggregates(matrices: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> dict:
    """{algo: {aggregate: (point, low, high)}} with 95% stratified bootstrap intervals (rliable;
    the resamples drawn from ``seed``, so a report is reproducible)."""
    from rliable import library as rly

    with seeded_numpy(seed):
        points, intervals = rly.get_interval_estimates(matrices, _aggregate, reps=reps)
    return {
        a: {
            name: (float(points[a][i]), float(intervals[a][0, i]), float(intervals[a][1, i]))
            for i, name in enumerate(AGGREGATES)
        }
        for a in matrices
    }


def probabilities_of_improvement(matrices: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> dict:
    """{(x, y): (P(x > y), low, high)} for every ordered pair of algorithms (rliable; resamples
    drawn from ``seed``)."""
    from rliable import library as rly
    from rliable import metrics

    pairs = {f"{x},{y}": [matrices[x], matrices[y]] for x in matrices for y in matrices if x != y}
    if not pairs:
        return {}
    with seeded_numpy(seed):
        points, intervals = rly.get_interval_estimates(pairs, metrics.probability_of_improvement, reps=reps)
    ci = {k: np.ravel(intervals[k]) for k in pairs}  # [2] or [2, 1]: (low, high)
    return {tuple(k.split(",")): (float(points[k]), float(ci[k][0]), float(ci[k][-1])) for k in pairs}


def marl_eval_json(runs: list[RunScores]) -> dict:
    """The runs in marl-eval's raw-data layout (one value per seed and step: the evaluation mean)."""
    out: dict = {}
    for run in runs:
        family, _, task = run.env.partition(":")
        name = "win_rate" if run.metric == "test_win_rate" else "return"
        algo = out.setdefault(family, {}).setdefault(task, {}).setdefault(run.algo, {})
        for s in range(run.curve.shape[1]):
            record = {
                f"step_{k}": {"step_count": int(run.steps[k]), name: [float(run.curve[k, s])]}
                for k in range(len(run.steps))
            }
            if run.absolute:
                record["absolute_metrics"] = {m: [float(v[s])] for m, v in run.absolute.items()}
            algo[f"seed_{len(algo)}"] = record
    return out


def _plots(runs: list[RunScores], matrices: dict, out: Path, reps: int) -> None:
    """Performance profiles and IQM sample-efficiency curves with 95% interval bands (rliable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import metrics

    everything = np.concatenate([m.ravel() for m in matrices.values()])
    taus = np.linspace(np.nanmin(everything), np.nanmax(everything), 51)
    profiles, cis = rly.create_performance_profile(matrices, taus, reps=reps)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for algo in matrices:
        ax.plot(taus, profiles[algo], label=algo)
        ax.fill_between(taus, cis[algo][0], cis[algo][1], alpha=0.2)
    ax.set(xlabel="score", ylabel="fraction of runs with score > tau", title="performance profile")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "performance_profile.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(
        1, len({r.env for r in runs}), figsize=(5 * len({r.env for r in runs}), 3.5), squeeze=False
    )
    for ax, env in zip(axes[0], sorted({r.env for r in runs})):
        for algo in sorted({r.algo for r in runs if r.env == env}):
            group = [r for r in runs if r.env == env and r.algo == algo]
            k = min(len(r.steps) for r in group)
            curve = np.concatenate([r.curve[:k] for r in group], axis=1).T  # [seeds, K]
            point, ci = rly.get_interval_estimates(
                {algo: curve[:, None, :]},
                lambda x: np.array([metrics.aggregate_iqm(x[:, :, j]) for j in range(x.shape[-1])]),
                reps=reps,
            )
            ax.plot(group[0].steps[:k], point[algo], label=algo)
            ax.fill_between(group[0].steps[:k], ci[algo][0], ci[algo][1], alpha=0.2)
        ax.set(xlabel="env steps per seed", ylabel=f"IQM {group[0].metric}", title=env)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "sample_efficiency.png", dpi=120)
    plt.close(fig)


def report(
    run_dirs: list[str],
    out: Path | str,
    labels: list[str] | None = None,
    reps: int = 2000,
    marl_eval: Path | str | None = None,
    seed: int = 0,
) -> dict:
    """Aggregate the run folders into ``out`` (``report.md``, ``report.json``, the plots); returns
    report.json. The bootstrap resamples are drawn from ``seed``: the same folders give the same report."""
    if labels is not None and len(labels) != len(run_dirs):
        raise ConfigError("labels", f"give one label per run folder ({len(run_dirs)}), got {len(labels)}")
    runs = [read_run(d, labels[i] if labels else None) for i, d in enumerate(run_dirs)]
    matrices, tasks = score_matrices(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "tasks": tasks,
        "normalised": len(tasks) > 1,
        "metric": sorted({r.metric for r in runs}),
        "seeds_per_task": {a: int(m.shape[0]) for a, m in matrices.items()},
        "aggregates": aggregates(matrices, reps, seed),
        "probability_of_improvement": {
            f"{x} > {y}": v for (x, y), v in probabilities_of_improvement(matrices, reps, seed).items()
        },
    }
    (out / "report.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text(format_report(result))
    with seeded_numpy(seed):
        _plots(runs, matrices, out, reps)
    if marl_eval is not None:
        Path(marl_eval).write_text(json.dumps(marl_eval_json(runs), indent=1))
    return result


def format_report(result: dict) -> str:
    scale = "min-max normalised per task" if result["normalised"] else "in the task's own units"
    lines = [
        f"# Aggregate scores ({', '.join(result['metric'])}; {scale}; tasks: {', '.join(result['tasks'])})",
        "",
        "95% stratified bootstrap intervals (rliable).",
        "",
        "| algo | seeds per task | " + " | ".join(AGGREGATES) + " |",
        "|---|---|" + "---|" * len(AGGREGATES),
    ]
    for algo, aggs in result["aggregates"].items():
        cells = [f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in (aggs[name] for name in AGGREGATES)]
        lines.append(f"| {algo} | {result['seeds_per_task'][algo]} | " + " | ".join(cells) + " |")
    if result["probability_of_improvement"]:
        lines += ["", "| probability of improvement | P | 95% interval |", "|---|---|---|"]
        lines += [
            f"| {pair} | {p:.3f} | [{lo:.3f}, {hi:.3f}] |"
            for pair, (p, lo, hi) in result["probability_of_improvement"].items()
        ]
    return "\n".join(lines) + "\n"

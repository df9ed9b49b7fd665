"""Aggregate results the way the field reports them: ``python -m jaxseq report RUN_DIR... --out DIR``.

Every seed of every run folder is one independent run; each run folder is one row (its algorithm,
or its ``--labels`` label; rows of one label pool their seeds). A sweep's run folder (its
``config.json`` has a ``sweep``) is one row per grid point, read from its ``points/NNN/`` folders
and labelled ``"<algo> <values>"`` (``a2po actor_lr=0.001``, as ``write_marl_eval`` does); a point
folder given on its own is labelled by its values too. A folder given twice (or a sweep folder
together with one of its points) is refused.

A run's score on a task is its absolute metric (the best checkpoint re-evaluated on 10x the
episodes, ``summary.json``) where the run has one, else its final greedy evaluation: the win rate
on envs that have one, else the return. Tasks are put on one scale so that they can be aggregated:
a task with a known range (``--score-range TASK=MIN,MAX``, else [0, 1] for a win rate) is
normalised by it, ``(s - min) / (max - min)``; other tasks are min-max normalised over every run
given (the lowest score maps to 0, the highest to 1) when the tasks differ, which is refused where
a task's scores are all equal; one task without a known range stays in its own units.

The aggregates come from ``rliable`` (Agarwal et al. 2021): IQM, median and mean with 95%
stratified bootstrap intervals, and the optimality gap (threshold 1) where every task has a known
range (elsewhere it means nothing and is left out); the probability of improvement of every
ordered pair of algorithms, performance profiles, and IQM sample-efficiency curves over the
evaluation steps. ``--marl-eval FILE`` writes the runs in marl-eval's JSON layout (Gorsane et al. 2022):
``{env: {task: {algo: {"seed_k": {"step_i": {"step_count", metrics...}, "absolute_metrics": {...}}}}}}``.
The arguments are checked before anything is read: ``--out`` must not be a file, ``--reps`` must
be positive, and ``--marl-eval``'s folder must exist (or be ``--out``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from jaxseq import sweep
from jaxseq.errors import ConfigError
from jaxseq.run_folder import read_jsonl

AGGREGATES = ("IQM", "Median", "Mean", "Optimality gap")

#: What a run's score per seed is (``report(score=...)``), in words.
SCORES = {
    "absolute": "the absolute metric where the run has one (best checkpoint, 10x the episodes), else the final "
    "greedy evaluation",
    "final": "the final greedy evaluation",
}

#: How a task's scores are scaled (:func:`task_scales`); the first two are known ranges.
GIVEN_RANGE, WIN_RATE, MIN_MAX, OWN_UNITS = "score range", "win rate", "min-max over the runs given", "own units"


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
    """The scores of one finished run folder, labelled ``label`` or else :func:`default_label` (a
    sweep's folder pools every grid point here: :func:`read_runs` reads its points instead)."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        rows = read_jsonl(run_dir / "metrics.jsonl")
    except (OSError, ValueError) as err:
        raise ConfigError("report", f"{run_dir} is not a finished run folder ({err})") from None
    has_win = summary.get("final_test_win_rate_per_seed") is not None
    label = label or default_label(run_dir, config)
    scores = scores_from_rows(label, config["env"], has_win, rows, absolute_per_seed(summary))
    if scores is None:
        raise ConfigError("report", f"{run_dir} has no greedy evaluation (eval_every was 0?)")
    return scores


def read_config(run_dir: Path) -> dict:
    """A run folder's config.json (ConfigError where it has none)."""
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ConfigError("report", f"{run_dir} is not a finished run folder ({err})") from None


def sweep_grid(config: dict) -> list[dict[str, float]]:
    """The grid points of a config.json's ``sweep`` ([{}] without one)."""
    return sweep.grid_of(config.get("sweep") or ())


def point_values(run_dir: Path, config: dict) -> dict[str, float] | None:
    """A sweep's point folder (``SWEEP/points/NNN``, ``config``: its config.json): {field: value} of
    the fields the sweep folder's config.json sweeps, as the point's config sets them; None for any
    other run folder."""
    parent = run_dir.resolve().parent
    if parent.name != "points":
        return None
    try:
        swept = sweep.normalize(json.loads((parent.parent / "config.json").read_text()).get("sweep") or ())
    except (OSError, ValueError):
        return None
    return {name: float(config[name]) for name, _ in swept} or None


def default_label(run_dir: Path, config: dict) -> str:
    """A run folder's row label: its algorithm, followed by its grid values for a sweep's point folder."""
    values = point_values(run_dir, config)
    return config["algo"] if values is None else f"{config['algo']} {sweep.label(values)}"


def expand(run_dirs: list[str], labels: list[str] | None) -> list[tuple[Path, str | None]]:
    """(folder, label or None for :func:`default_label`) of every row to read: a sweep folder becomes
    its grid points' folders (``points/NNN``; with a label, ``"<label> <values>"``). A folder met
    twice (given twice, or a sweep folder and one of its points) is refused."""
    rows, seen = [], {}
    for i, given in enumerate(run_dirs):
        run_dir, label = Path(given), labels[i] if labels else None
        config = read_config(run_dir)
        if config.get("sweep"):
            points = enumerate(sweep_grid(config))
            members = [(run_dir / "points" / f"{g:03d}", label and f"{label} {sweep.label(p)}") for g, p in points]
        else:
            members = [(run_dir, label)]
        for folder, member_label in members:
            key = folder.resolve()
            if key in seen:
                raise ConfigError(
                    "report", f"{folder} is given twice ({seen[key]} and {given}); each run folder counts once"
                )
            seen[key] = given
            rows.append((folder, member_label))
    return rows


def read_runs(run_dirs: list[str], labels: list[str] | None = None) -> list[RunScores]:
    """Every row of the run folders (:func:`expand`), read."""
    return [read_run(folder, label) for folder, label in expand(run_dirs, labels)]


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


def task_scales(runs: list[RunScores], score_ranges: dict | None = None) -> dict[str, dict]:
    """{task: {"by": how, "range": [min, max] or None}}: how each task's scores are put on one scale
    (see the module docstring; ``score_ranges``: {task: (min, max)} the user knows). Refuses a range
    for a task no run is on, and min-max normalisation over scores that are all equal."""
    score_ranges = score_ranges or {}
    tasks = sorted({r.env for r in runs})
    unknown = sorted(set(score_ranges) - set(tasks))
    if unknown:
        raise ConfigError("score_range", f"no run is on task {', '.join(unknown)} (the tasks: {', '.join(tasks)})")
    scales = {}
    for t in tasks:
        task_runs = [r for r in runs if r.env == t]
        if t in score_ranges:
            scales[t] = {"by": GIVEN_RANGE, "range": [float(v) for v in score_ranges[t]]}
        elif all(r.metric == "test_win_rate" for r in task_runs):
            scales[t] = {"by": WIN_RATE, "range": [0.0, 1.0]}
        elif len(tasks) > 1:
            values = np.concatenate([r.scores for r in task_runs])
            scales[t] = {"by": MIN_MAX, "range": [float(np.nanmin(values)), float(np.nanmax(values))]}
        else:
            scales[t] = {"by": OWN_UNITS, "range": None}
    flat = [f"on task {t} every score is {s['range'][0]:g}" for t, s in scales.items() if _flat(s)]
    if flat:
        raise ConfigError(
            "report",
            f"{'; '.join(flat)}: min-max normalisation over the runs needs at least two different scores per "
            "task; give more algorithms or seeds, or --score-range TASK=MIN,MAX",
        )
    return scales


def _flat(scale: dict) -> bool:
    """Whether a task to min-max normalise has no spread (every score equal, or none finite)."""
    return scale["by"] == MIN_MAX and not scale["range"][1] > scale["range"][0]


def known_ranges(scales: dict[str, dict]) -> bool:
    """Whether every task's scores have a known range (so the optimality gap means something)."""
    return all(s["by"] in (GIVEN_RANGE, WIN_RATE) for s in scales.values())


def score_matrices(
    runs: list[RunScores], scales: dict[str, dict] | None = None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """{algo: [runs, tasks]} of scores on the scales of :func:`task_scales` (computed here when not
    given), and the task order. Runs of one algorithm and task are pooled (their seeds stack);
    every algorithm needs the same number of runs on every task."""
    scales = task_scales(runs) if scales is None else scales
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
    for t in tasks:
        if scales[t]["range"] is not None:
            low, high = scales[t]["range"]
            for a in algos:
                pooled[(a, t)] = (pooled[(a, t)] - low) / (high - low)
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


def aggregates(
    matrices: dict[str, np.ndarray], reps: int = 2000, seed: int = 0, names: tuple[str, ...] = AGGREGATES
) -> dict:
    """{algo: {aggregate: (point, low, high)}} of the :data:`AGGREGATES` ``names`` (the optimality
    gap at threshold 1) with 95% stratified bootstrap intervals (rliable; the resamples drawn from
    ``seed``, so a report is reproducible)."""
    from rliable import library as rly
    from rliable import metrics

    funcs = dict(
        zip(
            AGGREGATES,
            (metrics.aggregate_iqm, metrics.aggregate_median, metrics.aggregate_mean, metrics.aggregate_optimality_gap),
        )
    )
    with seeded_numpy(seed):
        points, intervals = rly.get_interval_estimates(
            matrices, lambda x: np.array([funcs[name](x) for name in names]), reps=reps
        )
    return {
        a: {
            name: (float(points[a][i]), float(intervals[a][0, i]), float(intervals[a][1, i]))
            for i, name in enumerate(names)
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


def parse_score_ranges(texts: list[str] | None) -> dict[str, tuple[float, float]]:
    """The CLI's ``--score-range TASK=MIN,MAX`` (repeatable) -> {task: (min, max)}; the task is
    everything before the last ``=`` (task ids may hold one: ``mpe:spread?n=5=-60,-20``)."""
    ranges = {}
    for text in texts or []:
        task, _, values = text.rpartition("=")
        try:
            low, high = (float(v) for v in values.split(","))
        except ValueError:
            raise ConfigError("score_range", f"expected TASK=MIN,MAX, got {text!r}") from None
        if not task or task in ranges:
            raise ConfigError("score_range", f"expected TASK=MIN,MAX once per task, got {text!r}")
        ranges[task] = (low, high)
    return ranges


def check_arguments(run_dirs: list[str], out: Path, labels, reps, marl_eval, score_ranges: dict | None) -> None:
    """Refuse bad arguments of :func:`report` before anything is read or written."""
    if labels is not None and len(labels) != len(run_dirs):
        raise ConfigError("labels", f"give one label per run folder ({len(run_dirs)}), got {len(labels)}")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError("out", f"{existing} is a file, not a folder for the report")
    if not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ConfigError("reps", f"must be a positive integer, got {reps!r}")
    if marl_eval is not None:
        marl_eval = Path(marl_eval)
        if marl_eval.is_dir():
            raise ConfigError("marl_eval", f"{marl_eval} is a folder; give the JSON file to write")
        if not marl_eval.parent.is_dir() and marl_eval.parent.resolve() != out.resolve():
            raise ConfigError("marl_eval", f"the folder {marl_eval.parent} does not exist (a typo?)")
    for task, (low, high) in (score_ranges or {}).items():
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError("score_range", f"{task}: needs finite MIN < MAX, got {low:g},{high:g}")


def report(
    run_dirs: list[str],
    out: Path | str,
    labels: list[str] | None = None,
    reps: int = 2000,
    marl_eval: Path | str | None = None,
    seed: int = 0,
    score_ranges: dict[str, tuple[float, float]] | None = None,
    score: str = "absolute",
) -> dict:
    """Aggregate the run folders into ``out`` (``report.md``, ``report.json``, the plots); returns
    report.json. ``score_ranges``: {task: (min, max)} of known score ranges (normalise by them and
    report the optimality gap). ``score``: ``absolute`` (the absolute metric where a run has one,
    else its final evaluation) or ``final`` (the final greedy evaluation of every run). The
    bootstrap resamples are drawn from ``seed``: the same folders give the same report."""
    out = Path(out)
    check_arguments(run_dirs, out, labels, reps, marl_eval, score_ranges)
    if score not in SCORES:
        raise ConfigError("score", f"{score!r} is not allowed; allowed: {list(SCORES)}")
    runs = read_runs(run_dirs, labels)
    if score == "final":
        runs = [dataclasses.replace(r, scores=r.curve[-1]) for r in runs]
    scales = task_scales(runs, score_ranges)
    matrices, tasks = score_matrices(runs, scales)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "tasks": tasks,
        "normalised": any(s["by"] != OWN_UNITS for s in scales.values()),
        "scales": scales,
        "metric": sorted({r.metric for r in runs}),
        "score": SCORES[score],
        "seeds_per_task": {a: int(m.shape[0]) for a, m in matrices.items()},
        "aggregates": aggregates(matrices, reps, seed, aggregate_names(scales)),
        "probability_of_improvement": {
            f"{x} > {y}": v for (x, y), v in probabilities_of_improvement(matrices, reps, seed).items()
        },
    }
    (out / "report.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text(format_report(result))
    from jaxseq import plotting  # matplotlib and rliable's plotting: only where a report is drawn

    with seeded_numpy(seed):
        plotting.plot_performance_profile(matrices, out / "performance_profile.png", reps)
        plotting.plot_sample_efficiency(runs, out / "sample_efficiency.png", reps)
    if marl_eval is not None:
        Path(marl_eval).write_text(json.dumps(marl_eval_json(runs), indent=1))
    return result


def aggregate_names(scales: dict[str, dict]) -> tuple[str, ...]:
    """The aggregates to report: the optimality gap only where every task has a known range."""
    return AGGREGATES if known_ranges(scales) else AGGREGATES[:3]


def scale_text(task: str, scale: dict) -> str:
    """How one task's scores were scaled, in words."""
    low, high = scale["range"] or (None, None)
    return {
        GIVEN_RANGE: "{task} normalised by its score range [{low:g}, {high:g}]",
        WIN_RATE: "{task} win rate in [0, 1]",
        MIN_MAX: "{task} min-max normalised over the runs given [{low:g}, {high:g}]",
        OWN_UNITS: "{task} in its own units",
    }[scale["by"]].format(task=task, low=low, high=high)


def format_report(result: dict) -> str:
    """report.md: the aggregates table (and why the optimality gap is absent), then the
    probabilities of improvement."""
    names = aggregate_names(result["scales"])
    scales = "; ".join(scale_text(t, s) for t, s in result["scales"].items())
    lines = [
        f"# Aggregate scores ({', '.join(result['metric'])}; {scales})",
        "",
        f"Score per seed: {result['score']}. 95% stratified bootstrap intervals (rliable).",
        "",
        "| algo | seeds per task | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for algo, aggs in result["aggregates"].items():
        cells = [f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in (aggs[name] for name in names)]
        lines.append(f"| {algo} | {result['seeds_per_task'][algo]} | " + " | ".join(cells) + " |")
    if names != AGGREGATES:
        lines += [
            "",
            "No optimality gap: it needs scores of a known range (win rates, or --score-range TASK=MIN,MAX "
            "for every task), and these have none.",
        ]
    if result["probability_of_improvement"]:
        lines += ["", "| probability of improvement | P | 95% interval |", "|---|---|---|"]
        lines += [
            f"| {pair} | {p:.3f} | [{lo:.3f}, {hi:.3f}] |"
            for pair, (p, lo, hi) in result["probability_of_improvement"].items()
        ]
    return "\n".join(lines) + "\n"

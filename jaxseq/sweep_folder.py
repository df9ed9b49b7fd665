"""A sweep's run folder: one metrics stream per grid point, the curves of every point, the table.

``RUN_DIR/points/NNN/`` is a run folder of its own for grid point NNN: ``config.json`` (the base
config with the point's values), ``metrics.jsonl`` (rows over the point's seeds; the ``*_per_seed``
lists are its members) and ``summary.json``, so ``jaxseq report RUN_DIR/points/*`` reads them as
runs labelled by their values (as ``jaxseq report RUN_DIR`` does). ``RUN_DIR/sweep.json`` and
``sweep.md`` hold the sweep table: each point's final and best greedy test metric, the mean over
seeds with a 95% Student-t interval, sorted best final first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from jaxseq import sweep
from jaxseq.metrics import metrics_line, summarize
from jaxseq.run_folder import read_jsonl


def mean_interval(values, level: float = 0.95) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high) of the finite ``values``: a Student-t interval over seeds (no interval
    from fewer than two)."""
    x = np.asarray([v for v in values if v is not None], float)
    x = x[np.isfinite(x)]
    if not len(x):
        return None, None, None
    mean = float(x.mean())
    if len(x) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


class PointStreams:
    """The per-point metrics streams of a sweep run (resumed runs keep the rows up to the restored chunk)."""

    def __init__(self, run_dir: Path, config, start_chunk: int):
        self.points = sweep.grid(config)
        self.configs = sweep.point_configs(config)
        self.dirs = [Path(run_dir) / "points" / f"{i:03d}" for i in range(len(self.points))]
        for path, point_config in zip(self.dirs, self.configs):
            path.mkdir(parents=True, exist_ok=True)
            (path / "config.json").write_text(point_config.to_json())
            metrics = path / "metrics.jsonl"
            kept = [r for r in read_jsonl(metrics) if r["chunk"] <= start_chunk] if metrics.exists() else []
            metrics.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def record(self, has_win: bool, chunk: int, m: dict, evaluation: dict | None, seconds: float) -> None:
        """Append every point's row: the chunk metrics ``m`` (and ``evaluation``) [M] split by point."""
        n = len(self.points)
        m_parts = {k: sweep.split_members(v, n) for k, v in m.items()}
        ev_parts = {k: sweep.split_members(v, n) for k, v in evaluation.items()} if evaluation else None
        for i, (path, point_config) in enumerate(zip(self.dirs, self.configs)):
            point_ev = {k: v[i] for k, v in ev_parts.items()} if ev_parts else None
            row = metrics_line(point_config, has_win, chunk, {k: v[i] for k, v in m_parts.items()}, point_ev, seconds)
            with (path / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")

    def finish(self, has_win: bool) -> tuple[dict[str, list[dict]], list[dict]]:
        """Write every point's summary.json; returns ({label: rows} for the curves, the sweep table)."""
        runs, table = {}, []
        for i, (path, point, point_config) in enumerate(zip(self.dirs, self.points, self.configs)):
            rows = read_jsonl(path / "metrics.jsonl")
            if not rows:
                continue
            (path / "summary.json").write_text(json.dumps(summarize(point_config, rows), indent=2))
            runs[sweep.label(point)] = rows
            table.append(table_entry(i, point, rows, has_win))
        table.sort(key=lambda e: -np.inf if e["final_mean"] is None else e["final_mean"], reverse=True)
        return runs, table


def table_entry(index: int, point: dict, rows: list[dict], has_win: bool) -> dict:
    """One grid point's line of the sweep table, from its metrics rows."""
    metric, per_seed = (
        ("test_win_rate", "test_win_rate_per_seed") if has_win else ("test_return_mean", "test_return_per_seed")
    )
    evaluated = [r for r in rows if r.get(per_seed)]
    entry = {"point": index, "values": point, "label": sweep.label(point), "metric": metric}
    final = mean_interval(evaluated[-1][per_seed]) if evaluated else (None, None, None)
    scored = [(mean_interval(r[per_seed]), r["env_steps"]) for r in evaluated]
    scored = [(s, steps) for s, steps in scored if s[0] is not None]
    best, best_steps = max(scored, key=lambda item: item[0][0]) if scored else ((None, None, None), None)
    entry.update(final_mean=final[0], final_ci=list(final[1:]), best_mean=best[0], best_ci=list(best[1:]))
    entry["best_env_steps"] = best_steps
    return entry


def format_table(table: list[dict]) -> str:
    """The sweep table as Markdown."""

    def fmt(mean, ci):
        if mean is None:
            return "n/a"
        return f"{mean:.4g}" + (f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci[0] is not None else "")

    metric = table[0]["metric"] if table else "test metric"
    lines = [
        f"| point | values | final {metric} (95% CI) | best {metric} (95% CI) | best at env steps |",
        "|---|---|---|---|---|",
    ]
    for e in table:
        final, best = fmt(e["final_mean"], e["final_ci"]), fmt(e["best_mean"], e["best_ci"])
        lines.append(f"| {e['point']:03d} | {e['label']} | {final} | {best} | {e['best_env_steps']} |")
    return "\n".join(lines) + "\n"


def write_table(run_dir: Path, table: list[dict]) -> None:
    (Path(run_dir) / "sweep.json").write_text(json.dumps(table, indent=2))
    (Path(run_dir) / "sweep.md").write_text(format_table(table))

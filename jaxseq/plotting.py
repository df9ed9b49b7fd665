"""The PNGs jaxseq draws (matplotlib, headless): learning curves from ``metrics.jsonl`` rows, and a
report's performance profiles and IQM sample-efficiency curves (rliable, :mod:`jaxseq.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _series(rows: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["env_steps"], r[key]) for r in rows if r.get(key) is not None]
    if not pts:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*pts)
    return np.asarray(x, float), np.asarray(y, float)


def plot_runs(runs: Mapping[str, Sequence[Mapping]], path: Path, title: str = "") -> Path:
    """One figure: training return (mean +/- std over seeds) and greedy test return for each run;
    a win-rate panel where any run reports one. ``runs`` maps a label to its metrics rows."""
    has_win = any(r.get("win_rate") is not None for rows in runs.values() for r in rows)
    fig, axes = plt.subplots(1, 2 if has_win else 1, figsize=(11 if has_win else 6, 4), squeeze=False)
    ax = axes[0, 0]
    for label, rows in runs.items():
        x, y = _series(rows, "return_mean")
        _, s = _series(rows, "return_std")
        (line,) = ax.plot(x, y, label=f"{label} (train)")
        if len(s) == len(y):
            ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.2)
        tx, ty = _series(rows, "test_return_mean")
        if len(tx):
            ax.plot(tx, ty, "o--", color=line.get_color(), markersize=3, label=f"{label} (greedy test)")
    ax.set_xlabel("environment steps per seed")
    ax.set_ylabel("episode return")
    ax.legend(fontsize=7)
    if has_win:
        ax = axes[0, 1]
        for label, rows in runs.items():
            x, y = _series(rows, "win_rate")
            (line,) = ax.plot(x, y, label=f"{label} (train)")
            tx, ty = _series(rows, "test_win_rate")
            if len(tx):
                ax.plot(tx, ty, "o--", color=line.get_color(), markersize=3, label=f"{label} (greedy test)")
        ax.set_xlabel("environment steps per seed")
        ax.set_ylabel("win rate")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_performance_profile(matrices: dict, path: Path, reps: int) -> None:
    """Performance profiles with 95% interval bands (rliable): ``matrices`` {algo: [seeds, tasks]}."""
    from rliable import library as rly

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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sample_efficiency(runs: Sequence, path: Path, reps: int) -> None:
    """IQM over seeds of each run's evaluation curve, with 95% interval bands (rliable), one panel per
    task: ``runs`` are :class:`jaxseq.report.RunScores` (algo, env, metric, steps [K], curve [K, S])."""
    from rliable import library as rly
    from rliable import metrics

    envs = sorted({r.env for r in runs})
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.5), squeeze=False)
    for ax, env in zip(axes[0], envs):
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
    fig.savefig(path, dpi=120)
    plt.close(fig)

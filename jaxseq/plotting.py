"""Learning-curve PNGs from ``metrics.jsonl`` rows (matplotlib, headless)."""

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

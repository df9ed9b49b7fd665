"""The rows of ``metrics.jsonl`` and the summary of a run, from the compiled chunk's metrics.

Chunk metrics arrive as arrays with a leading member axis [M] (seeds, or grid points x seeds);
a row holds their means over members, per-agent diagnostics as lists, and the per-member returns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from jaxseq.config import Config

#: Keys every metrics.jsonl line carries (None where undefined or not measured in that chunk).
METRIC_KEYS = (
    "env_steps",
    "return_mean",
    "return_std",
    "win_rate",
    "test_return_mean",
    "test_win_rate",
    "sps",
    "loss_actor",
    "loss_critic",
    "entropy",
    "clip_frac",
    "approx_kl",
)


def finite_or_none(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def nanmean_or_none(values: np.ndarray) -> float | None:
    values = np.asarray(values, float)
    return finite_or_none(np.nanmean(values)) if np.isfinite(values).any() else None


def _nanstd(values: np.ndarray) -> float | None:
    values = np.asarray(values, float)
    return finite_or_none(np.nanstd(values)) if np.isfinite(values).any() else None


def metrics_line(config: Config, has_win: bool, chunk: int, m: dict, evaluation: dict | None, seconds: float) -> dict:
    """One metrics.jsonl row from the per-seed chunk metrics ``m`` (arrays [S])."""
    steps_per_chunk = config.updates_per_chunk * config.batch_size
    row = {
        "chunk": chunk,
        "update": chunk * config.updates_per_chunk,
        "env_steps": chunk * steps_per_chunk,
        "return_mean": nanmean_or_none(m["return_mean"]),
        "return_std": _nanstd(m["return_mean"]),
        "win_rate": nanmean_or_none(m["win_rate"]) if has_win else None,
        "test_return_mean": nanmean_or_none(evaluation["test_return_mean"]) if evaluation else None,
        "test_win_rate": nanmean_or_none(evaluation["test_win_rate"]) if evaluation and has_win else None,
        # Environment steps of every member together, per second of the chunk (the run loop
        # compiles ahead of the first chunk, so no figure includes compiling).
        "sps": (config.num_members * steps_per_chunk / seconds) if seconds > 0 else None,
    }
    for k in m:  # losses, diagnostics and anything an algorithm adds (means over seeds)
        if k in row or k in ("return_mean", "win_rate", "episodes"):
            continue
        values = np.asarray(m[k])
        # Per-agent diagnostics ([S, N]) become one list per line: the mean over seeds of each agent.
        row[k] = (
            [nanmean_or_none(values[:, j]) for j in range(values.shape[1])]
            if values.ndim == 2
            else nanmean_or_none(values)
        )
    row["return_per_seed"] = [finite_or_none(v) for v in np.asarray(m["return_mean"])]
    if evaluation:
        row["test_return_per_seed"] = [finite_or_none(v) for v in np.asarray(evaluation["test_return_mean"])]
        if has_win:
            row["test_win_rate_per_seed"] = [finite_or_none(v) for v in np.asarray(evaluation["test_win_rate"])]
    return row


#: The per-seed chunk metrics that must be finite (episode means may be NaN: no episode ended).
GUARDED = ("loss_actor", "loss_critic", "entropy", "approx_kl")


#: Prefix of the chunk metrics that say a train-state field is finite (bool [M] each).
FINITE = "finite_state."


def non_finite(m: dict) -> dict[int, list[str]]:
    """member -> what is not finite in the chunk metrics ``m``: the guarded metrics, and the train
    state's fields (``m["finite_state.<field>"]``: bool [M]) as ``state.<field>``."""
    bad = {}
    finite = {k[len(FINITE) :]: np.asarray(ok) for k, ok in m.items() if k.startswith(FINITE)}
    for member in range(len(next(iter(finite.values())))):
        names = [k for k in GUARDED if k in m and not np.all(np.isfinite(np.asarray(m[k])[member]))]
        names += [f"state.{name}" for name, ok in finite.items() if not ok[member]]
        if names:
            bad[member] = names
    return bad


def summarize(config: Config, rows: list[dict]) -> dict:
    def last(key):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return vals[-1] if vals else None

    sps = [r["sps"] for r in rows if r.get("sps")]
    return {
        "env": config.env,
        "algo": config.algo,
        "num_seeds": config.num_seeds,
        "sharing": config.sharing,
        "network": config.network,
        "chunks": rows[-1]["chunk"],
        "env_steps": rows[-1]["env_steps"],
        "first_return_mean": rows[0]["return_mean"],
        "final_return_mean": last("return_mean"),
        "final_return_std": last("return_std"),
        "final_win_rate": last("win_rate"),
        "final_test_return_mean": last("test_return_mean"),
        "final_test_win_rate": last("test_win_rate"),
        "best_test_win_rate": max(
            (r["test_win_rate"] for r in rows if r.get("test_win_rate") is not None), default=None
        ),
        # The last evaluation of each seed, for statistics over seeds (median, std) across runs.
        "final_test_return_per_seed": last("test_return_per_seed"),
        "final_test_win_rate_per_seed": last("test_win_rate_per_seed"),
        "mean_sps": float(np.mean(sps)) if sps else None,
        "wall_seconds": rows[-1].get("wall_seconds"),
    }

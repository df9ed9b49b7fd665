"""Evaluating a saved policy: ``python -m jaxseq eval RUN_DIR [--checkpoint best|last|CHUNK] [--episodes N]``.

The run's own config rebuilds the trainer; the chosen checkpoint's state is evaluated greedily
(:func:`jaxseq.rollout.greedy_evaluation`, the same program and key as the run's evaluations, so
the last checkpoint with the run's ``eval_episodes`` reproduces the run's last logged evaluation).
The interval is a 95% percentile bootstrap over the episodes of every seed (``scipy.stats.bootstrap``).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from scipy import stats

from jaxseq import checkpoint
from jaxseq.errors import ConfigError
from jaxseq.run import load_config


def _restore(run_dir: Path, which: str, abstract) -> tuple[int, object]:
    try:
        if which == "best":
            return checkpoint.restore_best(run_dir, abstract)
        if which == "last":
            return checkpoint.restore(run_dir, abstract)
        if which.isdigit():
            return int(which), checkpoint.restore_chunk(run_dir, int(which), abstract)
    except FileNotFoundError as err:
        raise ConfigError("checkpoint", str(err)) from None
    raise ConfigError("checkpoint", f"expected best, last or a chunk number, got {which!r}")


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if len(values) < 2 or np.ptp(values) == 0:
        return (float(values[0]), float(values[0])) if len(values) else (None, None)
    ci = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=0.95,
        method="percentile",
        n_resamples=2000,
        random_state=np.random.default_rng(0),
    ).confidence_interval
    return float(ci.low), float(ci.high)


def evaluate_run(run_dir: Path | str, which: str = "best", episodes: int | None = None) -> dict:
    """Greedy evaluation of checkpoint ``which`` ("best", "last" or a chunk number) of the run in
    ``run_dir`` on ``episodes`` episodes per seed (default: the run's ``eval_episodes``).

    Returns the chunk, episodes, per-seed means, the mean over seeds and its 95% interval, for the
    return and (where the env has one) the win rate."""
    from jaxseq.train import make_train

    run_dir = Path(run_dir)
    config = load_config(run_dir)
    trainer = make_train(config)
    abstract = trainer.abstract_state(jax.random.PRNGKey(config.seed))
    chunk, state = _restore(run_dir, which, abstract)
    episodes = episodes or config.eval_episodes
    ev = jax.device_get(trainer.evaluator(episodes)(state))
    metrics = {"return": ("test_return_mean", "episode_returns")}
    if trainer.env.spec.has_win:
        metrics["win_rate"] = ("test_win_rate", "episode_wins")
    out = {
        "run": str(run_dir),
        "checkpoint": which,
        "chunk": chunk,
        "env": config.env,
        "algo": config.algo,
        "episodes_per_seed": episodes,
        "seeds": config.num_seeds,
    }
    for name, (mean_key, episode_key) in metrics.items():
        per_seed = np.asarray(ev[mean_key], np.float64)
        low, high = _interval(np.asarray(ev[episode_key], np.float64).ravel())
        out[name] = {"mean": float(np.nanmean(per_seed)), "ci95": [low, high], "per_seed": per_seed.tolist()}
    return out


def format_evaluation(result: dict) -> str:
    lines = [
        f"{result['algo']} on {result['env']}: checkpoint {result['checkpoint']} (chunk {result['chunk']}), "
        f"{result['episodes_per_seed']} greedy episodes x {result['seeds']} seeds"
    ]
    for name in ("return", "win_rate"):
        if name in result:
            r = result[name]
            low, high = r["ci95"]
            seeds = ", ".join(f"{v:.4g}" for v in r["per_seed"])
            lines.append(f"{name:9s} {r['mean']:.4g}  95% CI [{low:.4g}, {high:.4g}]  per seed: {seeds}")
    return "\n".join(lines)

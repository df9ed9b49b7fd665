"""Evaluating a saved policy: ``python -m jaxseq eval RUN_DIR [--checkpoint C] [--episodes N] [--env ID]``.

The run's own config rebuilds the trainer (:func:`load_policy`, shared with ``jaxseq render``); the
chosen checkpoint's state is evaluated greedily (:func:`jaxseq.rollout.greedy_evaluation`, the same
program and key as the run's evaluations, so the last checkpoint with the run's ``eval_episodes``
reproduces the run's last logged evaluation). ``--env`` evaluates on another env id of the same
family whose agents, observation widths and actions are the run's (:func:`on_env`).
The interval is a 95% percentile bootstrap over the episodes of every seed (``scipy.stats.bootstrap``).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from scipy import stats

from jaxseq import checkpoint, sweep
from jaxseq.envs import parse_env_id
from jaxseq.errors import ConfigError
from jaxseq.run_folder import reading_config


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


def load_policy(run_dir: Path | str, which: str = "best") -> tuple[object, int, object]:
    """(trainer, chunk, state) of checkpoint ``which`` ("best", "last" or a chunk number) of the run
    in ``run_dir``: the trainer of the run's own config (on this machine's devices,
    :func:`jaxseq.run_folder.reading_config`) and its [M]-stacked state. ConfigError when the folder is
    not a run folder or has no such checkpoint."""
    from jaxseq.train import make_train

    config = reading_config(Path(run_dir))
    trainer = make_train(config)
    chunk, state = _restore(Path(run_dir), which, trainer.abstract_state(jax.random.PRNGKey(config.seed)))
    return trainer, chunk, state


def _policy_shape(spec) -> tuple:
    """What a policy's parameters and outputs depend on: agents, observation widths, actions."""
    return spec.num_agents, spec.obs_widths, spec.action_counts, spec.continuous


def _describe(spec) -> str:
    kind = "action dimensions" if spec.continuous else "discrete actions"
    return f"{spec.num_agents} agents, observation widths {list(spec.obs_widths)}, {kind} {list(spec.action_counts)}"


def on_env(trainer, env_id: str):
    """The trainer of ``trainer``'s config on ``env_id`` instead (itself for the same id). The env
    must be of the same family with the same agents, observation widths and actions (the policy's
    shapes); ConfigError naming both otherwise."""
    from jaxseq.train import make_train

    config = trainer.config
    if env_id == config.env:
        return trainer
    trained, wanted = parse_env_id(config.env)[0], parse_env_id(env_id)[0]
    if trained != wanted:
        raise ConfigError("env", f"{env_id!r} is a {wanted} env; the run was trained on {config.env!r} ({trained})")
    other = make_train(config.replace(env=env_id))
    if _policy_shape(other.env.spec) != _policy_shape(trainer.env.spec):
        raise ConfigError(
            "env",
            f"{env_id!r} has {_describe(other.env.spec)}; the run's policy was trained on {config.env!r} with "
            f"{_describe(trainer.env.spec)}, and evaluates only where they are the same",
        )
    return other


def _statistics(per_member: np.ndarray, episodes: np.ndarray) -> dict:
    """Mean over the members [S], its 95% interval over their episodes [S, E], and the per-member means."""
    low, high = _interval(np.asarray(episodes, np.float64).ravel())
    per_member = np.asarray(per_member, np.float64)
    return {"mean": float(np.nanmean(per_member)), "ci95": [low, high], "per_seed": per_member.tolist()}


def evaluate_run(run_dir: Path | str, which: str = "best", episodes: int | None = None, env: str | None = None) -> dict:
    """Greedy evaluation of checkpoint ``which`` ("best", "last" or a chunk number) of the run in
    ``run_dir`` on ``episodes`` episodes per seed (default: the run's ``eval_episodes``), on the
    run's env or on ``env`` (:func:`on_env`).

    Returns the chunk, episodes, per-seed means, the mean over seeds and its 95% interval, for the
    return and (where the env has one) the win rate. A sweep's grid points are never pooled: its
    result has instead ``points``, one entry per grid point (``label``, ``values`` and the same
    statistics over that point's seeds)."""
    run_dir = Path(run_dir)
    trainer, chunk, state = load_policy(run_dir, which)
    config = trainer.config
    target = on_env(trainer, env or config.env)
    episodes = episodes or config.eval_episodes
    ev = jax.device_get(target.evaluator(episodes)(state))
    metrics = {"return": ("test_return_mean", "episode_returns")}
    if target.env.spec.has_win:
        metrics["win_rate"] = ("test_win_rate", "episode_wins")
    out = {
        "run": str(run_dir),
        "checkpoint": which,
        "chunk": chunk,
        "env": target.config.env,
        "trained_env": config.env,
        "algo": config.algo,
        "episodes_per_seed": episodes,
        "seeds": config.num_seeds,
    }
    points = sweep.grid(config)

    def group(g: int) -> dict:
        rows = slice(g * config.num_seeds, (g + 1) * config.num_seeds)
        return {name: _statistics(ev[mean][rows], ev[eps][rows]) for name, (mean, eps) in metrics.items()}

    if not config.sweep:
        return {**out, **group(0)}
    out["points"] = [{"label": sweep.label(p), "values": p, **group(g)} for g, p in enumerate(points)]
    return out


def _metric_lines(result: dict, indent: str = "") -> list[str]:
    lines = []
    for name in ("return", "win_rate"):
        if name in result:
            r = result[name]
            low, high = r["ci95"]
            seeds = ", ".join(f"{v:.4g}" for v in r["per_seed"])
            lines.append(f"{indent}{name:9s} {r['mean']:.4g}  95% CI [{low:.4g}, {high:.4g}]  per seed: {seeds}")
    return lines


def format_evaluation(result: dict) -> str:
    trained = "" if result["env"] == result["trained_env"] else f" (trained on {result['trained_env']})"
    lines = [
        f"{result['algo']} on {result['env']}{trained}: checkpoint {result['checkpoint']} (chunk {result['chunk']}), "
        f"{result['episodes_per_seed']} greedy episodes x {result['seeds']} seeds"
        + (f" x {len(result['points'])} grid points" if "points" in result else "")
    ]
    if "points" not in result:
        return "\n".join(lines + _metric_lines(result))
    for point in result["points"]:
        lines += [f"{point['label']}:"] + _metric_lines(point, "  ")
    return "\n".join(lines)

"""The thin Python loop around the compiled chunks: run folder, metrics, evaluation, checkpoints.

A run folder holds ``config.json`` (the resolved config), ``metrics.jsonl`` (one line per chunk),
``curves.png``, ``summary.json`` and ``checkpoints/``. On an env that keeps episode records (a
host environment, ``jaxseq.envs.bridge``: the env's ``records_episodes`` hook) it also holds
``episodes.jsonl``, one line per ended episode with its behaviour metrics (e.g. GRF goals), whose
chunk means enter the metrics lines as ``episode_<name>`` (training) and ``test_<name>``
(evaluation). The loop knows no env kind: it reads only those hooks.

:func:`train_run` starts or resumes a run. A resumed run restores the state after the last
checkpointed chunk, drops metrics lines written after it, and continues; on a JAX env and the same
device it reproduces the uninterrupted run exactly (a host env's episodes restart).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxseq import checkpoint
from jaxseq.config import Config
from jaxseq.errors import ConfigError, RunDiverged
from jaxseq.plotting import plot_runs, read_jsonl

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


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def _nanmean(values: np.ndarray) -> float | None:
    values = np.asarray(values, float)
    return _num(np.nanmean(values)) if np.isfinite(values).any() else None


def _nanstd(values: np.ndarray) -> float | None:
    values = np.asarray(values, float)
    return _num(np.nanstd(values)) if np.isfinite(values).any() else None


def metrics_line(config: Config, has_win: bool, chunk: int, m: dict, evaluation: dict | None, seconds: float) -> dict:
    """One metrics.jsonl row from the per-seed chunk metrics ``m`` (arrays [S])."""
    steps_per_chunk = config.updates_per_chunk * config.batch_size
    row = {
        "chunk": chunk,
        "update": chunk * config.updates_per_chunk,
        "env_steps": chunk * steps_per_chunk,
        "return_mean": _nanmean(m["return_mean"]),
        "return_std": _nanstd(m["return_mean"]),
        "win_rate": _nanmean(m["win_rate"]) if has_win else None,
        "test_return_mean": _nanmean(evaluation["test_return_mean"]) if evaluation else None,
        "test_win_rate": _nanmean(evaluation["test_win_rate"]) if evaluation and has_win else None,
        # Environment steps of every seed together, per second of the chunk (compile excluded
        # from the first chunk's figure is impossible, so it is null there).
        "sps": (config.num_seeds * steps_per_chunk / seconds) if seconds > 0 else None,
    }
    for k in m:  # losses, diagnostics and anything an algorithm adds (means over seeds)
        if k in row or k in ("return_mean", "win_rate", "episodes"):
            continue
        values = np.asarray(m[k])
        # Per-agent diagnostics ([S, N]) become one list per line: the mean over seeds of each agent.
        row[k] = [_nanmean(values[:, j]) for j in range(values.shape[1])] if values.ndim == 2 else _nanmean(values)
    row["return_per_seed"] = [_num(v) for v in np.asarray(m["return_mean"])]
    if evaluation:
        row["test_return_per_seed"] = [_num(v) for v in np.asarray(evaluation["test_return_mean"])]
        if has_win:
            row["test_win_rate_per_seed"] = [_num(v) for v in np.asarray(evaluation["test_win_rate"])]
    return row


def _new_run_dir(out: Path, config: Config) -> Path:
    safe_env = config.env.replace(":", "-").replace("?", "-").replace("&", "-").replace("=", "")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(out) / f"{config.algo}-{safe_env}-s{config.seed}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(out) / f"{config.algo}-{safe_env}-s{config.seed}-{stamp}-{suffix}"
    try:
        path.mkdir(parents=True)
        (path / "config.json").write_text(config.to_json())
    except OSError as err:
        raise ConfigError("out", f"cannot create a run folder under {out}: {err.strerror or err}") from None
    return path


def load_config(run_dir: Path) -> Config:
    """The config of the run folder ``run_dir``; ConfigError("resume", ...) if it has none or it is damaged."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError("resume", f"{run_dir} is not a run folder (no config.json)")
    try:
        return Config(**json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise ConfigError("resume", f"{path} is not a readable jaxseq config ({err})") from None


#: Fields a resumed run may change: its length and its evaluation and checkpoint cadence.
RESUMABLE = ("total_steps", "eval_every", "eval_envs", "eval_episodes", "absolute_factor", "checkpoint_every")


def resumed_config(run_dir: Path, overrides: dict | None = None) -> Config:
    """The run's config with ``overrides`` applied where they are :data:`RESUMABLE` (``total_steps``
    extends a run); any other field that differs from the run's is refused with ConfigError."""
    config = load_config(run_dir)
    changed = {k: v for k, v in (overrides or {}).items() if getattr(config, k, None) != v}
    refused = sorted(set(changed) - set(RESUMABLE))
    if refused:
        raise ConfigError(
            "resume",
            f"{', '.join(refused)} cannot change when a run is resumed (only {', '.join(RESUMABLE)} can); "
            "start a new run for the others",
        )
    return config.replace(**changed)


class _WandbLogger:
    def __init__(self, config: Config, run_dir: Path):
        try:
            import wandb
        except ImportError:
            raise ConfigError(
                "wandb", "wandb is not installed; install it with `pip install jaxseq[wandb]` or run without --wandb"
            ) from None
        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "jaxseq"),
            config=config.to_dict(),
            dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),
            name=run_dir.name,
        )

    def log(self, row: dict) -> None:
        self._run.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=row["env_steps"])

    def close(self) -> None:
        self._run.finish()


class _HostEpisodes:
    """Writes a host environment's ended episodes to ``episodes.jsonl`` and averages their
    behaviour metrics per chunk."""

    def __init__(self, path: Path, names: tuple[str, ...], start_chunk: int):
        self.path, self.names = path, names
        kept = [r for r in read_jsonl(path) if r["chunk"] <= start_chunk] if path.exists() else []
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def record(self, chunk: int, train: list[dict], test: list[dict], failures: list[dict]) -> dict:
        """Append the chunk's ended episodes and worker failures; returns the chunk's metrics entries."""
        with self.path.open("a") as f:
            for phase, records in (("train", train), ("test", test)):
                for r in records:
                    f.write(json.dumps({"chunk": chunk, "phase": phase, **{k: _num(v) for k, v in r.items()}}) + "\n")
            for failure in failures:
                f.write(json.dumps({"chunk": chunk, "phase": "worker_failure", **failure}) + "\n")
        row = {"worker_failures": len(failures)}
        for prefix, records in (("episode", train), ("test", test)):
            for name in self.names:
                row[f"{prefix}_{name}"] = _nanmean([r[name] for r in records]) if records else None
        return row


#: The per-seed chunk metrics that must be finite (episode means may be NaN: no episode ended).
GUARDED = ("loss_actor", "loss_critic", "entropy", "approx_kl")


def non_finite(m: dict) -> dict[int, list[str]]:
    """seed -> the guarded metrics (and "parameters") that are not finite in the chunk metrics ``m``."""
    bad = {}
    for seed, params_ok in enumerate(np.asarray(m["params_finite"])):
        names = [k for k in GUARDED if k in m and not np.all(np.isfinite(np.asarray(m[k])[seed]))]
        names += [] if params_ok else ["parameters"]
        if names:
            bad[seed] = names
    return bad


def _progress(row: dict, has_win: bool) -> dict:
    """The progress bar's numbers in this chunk's row: the training return (and win rate where
    the env has one) and, in an evaluation's row, its numbers; nothing undefined for the env."""
    keys = {"ret": "return_mean", "test": "test_return_mean"}
    if has_win:
        keys.update(win="win_rate", test_win="test_win_rate")
    return {name: row[key] for name, key in keys.items() if row.get(key) is not None}


def _best_score(has_win: bool, evaluation: dict) -> tuple[str, float | None]:
    """The metric the best checkpoint is chosen by, and its value over seeds (None: no episode ended)."""
    metric = "test_win_rate" if has_win else "test_return_mean"
    return metric, _nanmean(evaluation[metric])


def absolute_metric(trainer, run_dir: Path) -> dict:
    """The absolute metric (Gorsane et al. 2022): the best checkpoint re-evaluated greedily on
    ``absolute_factor`` x ``eval_episodes`` episodes per seed; {} without evaluations or a best
    checkpoint, or with ``absolute_factor`` 0."""
    config = trainer.config
    if not (config.eval_every and config.absolute_factor) or checkpoint.best(run_dir) is None:
        return {}
    abstract = jax.eval_shape(trainer.init, jax.random.PRNGKey(config.seed))
    chunk, state = checkpoint.restore_best(run_dir, abstract)
    episodes = config.absolute_factor * config.eval_episodes
    ev = jax.device_get(trainer.evaluator(episodes)(state))
    out = {
        "absolute_checkpoint_chunk": chunk,
        "absolute_episodes_per_seed": episodes,
        "absolute_test_return_mean": _nanmean(ev["test_return_mean"]),
        "absolute_test_return_per_seed": [_num(v) for v in ev["test_return_mean"]],
    }
    if trainer.env.spec.has_win:
        out["absolute_test_win_rate"] = _nanmean(ev["test_win_rate"])
        out["absolute_test_win_rate_per_seed"] = [_num(v) for v in ev["test_win_rate"]]
    return out


def _open_run(config, out, resume, overrides, start_over):
    """(run folder, config, trainer): the config validated and the env built before any folder
    is made; a resumed folder must hold a checkpoint unless ``start_over``."""
    from jaxseq.train import make_train

    if resume is None:
        trainer = make_train(config)
        return _new_run_dir(Path(out), config), config, trainer
    run_dir = Path(resume)
    config = resumed_config(run_dir, overrides)
    trainer = make_train(config)
    if checkpoint.latest_chunk(run_dir) is None and not start_over:
        raise ConfigError("resume", f"{run_dir} has no checkpoint; pass --start-over to train it again from chunk 0")
    (run_dir / "config.json").write_text(config.to_json())
    return run_dir, config, trainer


def _initial_state(trainer, run_dir: Path, key) -> tuple[int, Any]:
    """(chunk, state): the newest intact checkpoint's (metrics lines after it dropped), or a fresh start."""
    metrics_path = run_dir / "metrics.jsonl"
    if checkpoint.latest_chunk(run_dir) is None:
        metrics_path.write_text("")
        return 0, trainer.init(key)
    try:
        chunk, state = checkpoint.restore(run_dir, jax.eval_shape(trainer.init, key))
    except FileNotFoundError as err:
        raise ConfigError("resume", str(err)) from None
    kept = [r for r in read_jsonl(metrics_path) if r["chunk"] <= chunk] if metrics_path.exists() else []
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return chunk, state


def train_run(
    config: Config | None = None,
    out: Path | str = "runs",
    resume: Path | str | None = None,
    use_wandb: bool = False,
    progress: bool = True,
    max_chunks: int | None = None,
    overrides: dict | None = None,
    start_over: bool = False,
) -> Path:
    """Train in a new run folder under ``out`` (or continue ``resume``, with the :data:`RESUMABLE`
    ``overrides``); returns the run folder.

    Every finished chunk is kept: checkpoints every ``checkpoint_every`` chunks and at any exit
    (Ctrl-C, an error), the best evaluated state in ``checkpoints/best``. A chunk whose losses or
    parameters are not finite in any seed stops the run with :class:`~jaxseq.errors.RunDiverged`;
    its state is discarded, so the checkpoints hold the last finite one.
    ``max_chunks`` stops after that many chunks in total (used by tests to simulate an interruption).
    """
    run_dir, config, trainer = _open_run(config, out, resume, overrides, start_over)
    start_chunk, state = _initial_state(trainer, run_dir, jax.random.PRNGKey(config.seed))
    metrics_path = run_dir / "metrics.jsonl"
    end_chunk = config.num_chunks if max_chunks is None else min(config.num_chunks, max_chunks)
    has_win = trainer.env.spec.has_win
    env = trainer.env
    host_episodes = (
        _HostEpisodes(run_dir / "episodes.jsonl", env.episode_metrics, start_chunk) if env.records_episodes else None
    )
    logger = _WandbLogger(config, run_dir) if use_wandb else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.num_chunks, initial=start_chunk, unit="chunk", desc=f"{config.algo} {config.env}")
    best = (checkpoint.best(run_dir) or {}).get("score") if start_chunk else None
    done_chunk, absolute, shown = start_chunk, {}, {}
    t_start = time.time()
    try:
        for chunk in range(start_chunk + 1, end_chunk + 1):
            new_state, row, evaluation = _run_chunk(
                trainer, state, chunk, done_chunk, chunk == start_chunk + 1, host_episodes
            )
            row["wall_seconds"] = time.time() - t_start
            with metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            # A chunk counts as finished once its metrics line is written.
            state, done_chunk = new_state, chunk
            if logger:
                logger.log(row)
            if bar is not None:
                bar.update(1)
                shown.update(_progress(row, has_win))  # an evaluation's numbers stay until the next one
                bar.set_postfix(shown)
            if chunk % config.checkpoint_every == 0:
                checkpoint.save(run_dir, chunk, state)
            if evaluation is not None:
                metric, score = _best_score(has_win, evaluation)
                if score is not None and (best is None or score > best):
                    best = score
                    checkpoint.save_best(run_dir, chunk, state, metric, score)
        if done_chunk == config.num_chunks:
            absolute = absolute_metric(trainer, run_dir)
    finally:
        # On normal exit, Ctrl-C or an error: keep every finished chunk.
        if bar is not None:
            bar.close()
        if done_chunk > (checkpoint.latest_chunk(run_dir) or 0):
            checkpoint.save(run_dir, done_chunk, state)
        if logger:
            logger.close()
        env.close()
        _write_summary(config, run_dir, absolute)
    return run_dir


def _run_chunk(trainer, state, chunk: int, done_chunk: int, first: bool, host_episodes) -> tuple[Any, dict, dict]:
    """One compiled chunk, the finite-value guard, the evaluation when due, and the chunk's metrics
    row. Returns (new state, row, evaluation or None); raises RunDiverged (nothing written)."""
    config, env = trainer.config, trainer.env
    t0 = time.time()
    new_state, m = trainer.chunk(state)
    m = jax.device_get(m)
    seconds = time.time() - t0
    bad = non_finite(m)
    if bad:
        raise RunDiverged(chunk, bad, done_chunk)
    m.pop("params_finite")
    train_episodes = env.take_episodes()
    evaluation = None
    if config.eval_every and (chunk % config.eval_every == 0 or chunk == config.num_chunks):
        evaluation = jax.device_get(trainer.evaluate(new_state))
    # The first chunk's time includes compiling, so its throughput is not reported.
    row = metrics_line(config, env.spec.has_win, chunk, m, evaluation, 0.0 if first else seconds)
    if host_episodes is not None:
        row.update(host_episodes.record(chunk, train_episodes, env.take_episodes(), env.take_failures()))
    return new_state, row, evaluation


def _write_summary(config: Config, run_dir: Path, absolute: dict) -> None:
    """curves.png and summary.json from the run's metrics lines, and the summary printed."""
    rows = read_jsonl(run_dir / "metrics.jsonl")
    if rows:
        plot_runs({config.algo: rows}, run_dir / "curves.png", title=f"{config.algo} on {config.env}")
        summary = {**summarize(config, rows), **absolute}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(format_summary(summary, run_dir))


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


def format_summary(summary: dict, run_dir: Path) -> str:
    width = max(len(k) for k in summary)

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = [f"run folder: {run_dir}", "-" * (width + 20)]
    lines += [f"{k:<{width}}  {fmt(v)}" for k, v in summary.items()]
    return "\n".join(lines)

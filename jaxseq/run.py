"""The thin Python loop around the compiled chunks: run folder, metrics, evaluation, checkpoints.

A run folder holds ``config.json`` (the resolved config), ``metrics.jsonl`` (one line per chunk),
``curves.png``, ``summary.json`` and ``checkpoints/``; with ``write_marl_eval`` also
``marl_eval.json``, rewritten after every evaluation (:func:`write_marl_eval`). On an env that keeps episode records (a
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
import os
import time
from pathlib import Path
from typing import Any

import jax

from jaxseq import checkpoint, compile_cache, distributed, sweep
from jaxseq.config import Config
from jaxseq.errors import ConfigError, RunDiverged, RunInterrupted
from jaxseq.metrics import FINITE, finite_or_none, metrics_line, nanmean_or_none, non_finite, summarize
from jaxseq.paths import check_output_folder, env_slug
from jaxseq.plotting import plot_runs
from jaxseq.run_folder import load_config, read_jsonl
from jaxseq.sweep_folder import PointStreams, format_table, write_table


def _new_run_dir(out: Path, config: Config) -> Path:
    safe_env = env_slug(config.env)
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


#: Fields a resumed run may change: its length, its evaluation and checkpoint cadence, the
#: marl-eval file, and the devices it is sharded over.
RESUMABLE = (
    "total_steps",
    "eval_every",
    "eval_envs",
    "eval_episodes",
    "absolute_factor",
    "checkpoint_every",
    "write_marl_eval",
    "devices",
    "shard",
)


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
                    f.write(
                        json.dumps({"chunk": chunk, "phase": phase, **{k: finite_or_none(v) for k, v in r.items()}})
                        + "\n"
                    )
            for failure in failures:
                f.write(json.dumps({"chunk": chunk, "phase": "worker_failure", **failure}) + "\n")
        row = {"worker_failures": len(failures)}
        for prefix, records in (("episode", train), ("test", test)):
            for name in self.names:
                row[f"{prefix}_{name}"] = nanmean_or_none([r[name] for r in records]) if records else None
        return row


def _progress(row: dict, has_win: bool) -> dict:
    """The progress bar's numbers in this chunk's row: the training return (and win rate where
    the env has one) and, in an evaluation's row, its numbers; nothing undefined for the env."""
    keys = {"ret": "return_mean", "test": "test_return_mean"}
    if has_win:
        keys.update(win="win_rate", test_win="test_win_rate")
    return {name: row[key] for name, key in keys.items() if row.get(key) is not None}


def write_marl_eval(run_dir: Path, config: Config, has_win: bool, absolute: dict, points) -> None:
    """``RUN_DIR/marl_eval.json`` (:func:`jaxseq.report.marl_eval_json`) from the metrics lines so far:
    per seed one entry per evaluation, and the absolute metric (:func:`absolute_metric`'s dict, or {})
    where given. A sweep's grid points are algorithms of their own (``a2po actor_lr=0.001``), each
    with its seeds. Nothing is written before the first evaluation."""
    from jaxseq.report import absolute_per_seed, marl_eval_json, scores_from_rows

    per_seed = absolute_per_seed(absolute)
    if points is None:
        streams = [(config.algo, run_dir, per_seed)]
    else:
        s = config.num_seeds
        streams = [
            (f"{config.algo} {sweep.label(p)}", d, {k: v[i * s : (i + 1) * s] for k, v in per_seed.items()})
            for i, (p, d) in enumerate(zip(points.points, points.dirs))
        ]
    runs = [scores_from_rows(label, config.env, has_win, read_jsonl(d / "metrics.jsonl"), a) for label, d, a in streams]
    runs = [r for r in runs if r is not None]
    if runs:
        (run_dir / "marl_eval.json").write_text(json.dumps(marl_eval_json(runs), indent=1))


def _best_score(has_win: bool, evaluation: dict) -> tuple[str, float | None]:
    """The metric the best checkpoint is chosen by, and its value over seeds (None: no episode ended)."""
    metric = "test_win_rate" if has_win else "test_return_mean"
    return metric, nanmean_or_none(evaluation[metric])


def absolute_metric(trainer, run_dir: Path) -> dict:
    """The absolute metric (Gorsane et al. 2022): the best checkpoint re-evaluated greedily on
    ``absolute_factor`` x ``eval_episodes`` episodes per seed; {} without evaluations or a best
    checkpoint, or with ``absolute_factor`` 0."""
    config = trainer.config
    if not (config.eval_every and config.absolute_factor) or checkpoint.best(run_dir) is None:
        return {}
    abstract = trainer.abstract_state(jax.random.PRNGKey(config.seed))
    chunk, state = checkpoint.restore_best(run_dir, abstract)
    episodes = config.absolute_factor * config.eval_episodes
    ev = distributed.gather(trainer.evaluator(episodes)(trainer.place(state)))
    out = {
        "absolute_checkpoint_chunk": chunk,
        "absolute_episodes_per_seed": episodes,
        "absolute_test_return_mean": nanmean_or_none(ev["test_return_mean"]),
        "absolute_test_return_per_seed": [finite_or_none(v) for v in ev["test_return_mean"]],
    }
    if trainer.env.spec.has_win:
        out["absolute_test_win_rate"] = nanmean_or_none(ev["test_win_rate"])
        out["absolute_test_win_rate_per_seed"] = [finite_or_none(v) for v in ev["test_win_rate"]]
    return out


def _open_run(config, out, resume, overrides, start_over):
    """(run folder, config, trainer, compiled chunk): the config validated, the env built and the
    chunk compiled (its memory checked) before any folder is made; a resumed folder must hold a
    checkpoint unless ``start_over``. Process 0 makes or rewrites the folder; every process gets
    its path."""
    from jaxseq.train import make_train

    main = distributed.is_main_process()
    if resume is None:
        check_output_folder(out, "out")
        trainer = make_train(config)
        program = _compile(trainer)
        run_dir = str(_new_run_dir(Path(out), config)) if main else ""
        return Path(distributed.broadcast_text(run_dir)), config, trainer, program
    run_dir = Path(resume)
    config = resumed_config(run_dir, overrides)
    trainer = make_train(config)
    if checkpoint.latest_chunk(run_dir) is None and not start_over:
        raise ConfigError("resume", f"{run_dir} has no checkpoint; pass --start-over to train it again from chunk 0")
    program = _compile(trainer)
    if main:
        (run_dir / "config.json").write_text(config.to_json())
    return run_dir, config, trainer, program


def _initial_state(trainer, run_dir: Path, key) -> tuple[int, Any]:
    """(chunk, state): the newest intact checkpoint's (metrics lines after it dropped), or a fresh start."""
    metrics_path = run_dir / "metrics.jsonl"
    main = distributed.is_main_process()
    if checkpoint.latest_chunk(run_dir) is None:
        if main:
            metrics_path.write_text("")
        return 0, trainer.init(key)
    try:
        chunk, state = checkpoint.restore(run_dir, trainer.abstract_state(key))
    except FileNotFoundError as err:
        raise ConfigError("resume", str(err)) from None
    if main:
        kept = [r for r in read_jsonl(metrics_path) if r["chunk"] <= chunk] if metrics_path.exists() else []
        metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return chunk, trainer.place(state)


def _compile(trainer):
    """The chunk compiled for the run's state (its shapes and shardings); where compiled programs
    are kept and its memory per member printed, and a run that cannot fit one device's memory
    refused (ConfigError naming ``sweep`` or ``num_seeds``)."""
    config = trainer.config
    if distributed.is_main_process():
        compile_cache.announce()
    compiled = trainer.compile_chunk(trainer.abstract_state(jax.random.PRNGKey(config.seed)))
    devices = 1 if trainer.mesh is None else trainer.mesh.size
    per_device = config.num_members // devices if config.shard == "members" else config.num_members
    field = "sweep" if config.sweep else "num_seeds"
    sizes = (
        f"the env's agent count ({trainer.env.spec.num_agents}), num_envs ({config.num_envs}), "
        f"rollout_length ({config.rollout_length}), updates_per_chunk ({config.updates_per_chunk}) "
        f"or hidden_size ({config.hidden_size})"
    )
    needed = distributed.program_bytes(compiled)
    line = distributed.check_memory(needed, per_device, distributed.device_memory(), field, sizes)
    if distributed.is_main_process():
        print(line, flush=True)
    return compiled


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
    (Ctrl-C, an error), the best evaluated state as ``checkpoints/best.json`` names it. A chunk whose
    losses or train state are not finite in any member stops the run with :class:`~jaxseq.errors.RunDiverged`;
    its state is discarded, so the checkpoints hold the last finite one. A sweep also writes one
    stream per grid point and the sweep table (:mod:`jaxseq.sweep_folder`). In a multi-process run
    every process calls this; process 0 writes the folder.
    ``max_chunks`` stops after that many chunks in total (used by tests to simulate an interruption).
    Ctrl-C once the run folder exists raises :class:`~jaxseq.errors.RunInterrupted` (a
    KeyboardInterrupt naming the folder and its newest checkpoint).
    """
    run_dir, config, trainer, program = _open_run(config, out, resume, overrides, start_over)
    try:
        return _train(trainer, program, run_dir, config, use_wandb, progress, max_chunks)
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir, checkpoint.latest_chunk(run_dir)) from None


def _train(trainer, program, run_dir: Path, config: Config, use_wandb: bool, progress: bool, max_chunks) -> Path:
    """The loop of :func:`train_run` in an opened run folder."""
    start_chunk, state = _initial_state(trainer, run_dir, jax.random.PRNGKey(config.seed))
    log = _RunLog(trainer, run_dir, start_chunk, use_wandb, progress)
    end_chunk = config.num_chunks if max_chunks is None else min(config.num_chunks, max_chunks)
    has_win = trainer.env.spec.has_win
    best = (checkpoint.best(run_dir) or {}).get("score") if start_chunk else None
    done_chunk, absolute = start_chunk, {}
    try:
        for chunk in range(start_chunk + 1, end_chunk + 1):
            new_state, m, evaluation, train_episodes = _run_chunk(trainer, program, state, chunk, done_chunk)
            log.chunk(chunk, m, evaluation, train_episodes)
            # A chunk counts as finished once its metrics line is written.
            state, done_chunk = new_state, chunk
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
        log.close()
        try:
            if done_chunk > (checkpoint.latest_chunk(run_dir) or 0):
                checkpoint.save(run_dir, done_chunk, state)
        finally:  # a failed save (a full disk) still closes the env and summarises what was written
            trainer.env.close()
            if distributed.is_main_process():
                _write_summary(config, run_dir, absolute, log.points, has_win)
    return run_dir


def _run_chunk(trainer, program, state, chunk: int, done_chunk: int) -> tuple[Any, dict, dict | None, list]:
    """One compiled chunk, the finite-value guard and the evaluation when due. Returns (new state,
    chunk metrics [M], evaluation [M] or None, gathered to every process; the host env's records
    of the training episodes the chunk ended); raises RunDiverged."""
    config = trainer.config
    t0 = time.time()
    new_state, m = program(state)
    m = distributed.gather(m)
    m["seconds"] = time.time() - t0
    bad = non_finite(m)
    if bad:
        raise RunDiverged(chunk, bad, done_chunk, {m: sweep.member_label(config, m) for m in bad})
    for name in [k for k in m if k.startswith(FINITE)]:
        m.pop(name)
    # The training episodes the chunk ended, taken before the evaluation's episodes join them.
    train_episodes = trainer.env.take_episodes()
    evaluation = None
    if config.eval_every and (chunk % config.eval_every == 0 or chunk == config.num_chunks):
        evaluation = distributed.gather(trainer.evaluate(new_state))
    return new_state, m, evaluation, train_episodes


class _RunLog:
    """Everything a chunk writes in process 0: the metrics line (and a sweep's point streams), the
    host env's episodes, wandb and the progress bar. Other processes write nothing."""

    def __init__(self, trainer, run_dir: Path, start_chunk: int, use_wandb: bool, progress: bool):
        config, env = trainer.config, trainer.env
        self.config, self.env, self.has_win = config, env, env.spec.has_win
        self.run_dir, self.metrics_path, self.t_start, self.shown = run_dir, run_dir / "metrics.jsonl", time.time(), {}
        self.active = distributed.is_main_process()
        self.points = PointStreams(run_dir, config, start_chunk) if config.sweep and self.active else None
        self.host_episodes = (
            _HostEpisodes(run_dir / "episodes.jsonl", env.episode_metrics, start_chunk)
            if env.records_episodes and self.active
            else None
        )
        self.logger = _WandbLogger(config, run_dir) if use_wandb and self.active else None
        self.bar = None
        if progress and self.active:
            from tqdm import tqdm

            self.bar = tqdm(
                total=config.num_chunks, initial=start_chunk, unit="chunk", desc=f"{config.algo} {config.env}"
            )

    def chunk(self, chunk: int, m: dict, evaluation: dict | None, train_episodes: list) -> None:
        if not self.active:
            return
        seconds = m.pop("seconds")
        row = metrics_line(self.config, self.has_win, chunk, m, evaluation, seconds)
        if self.host_episodes is not None:
            row.update(
                self.host_episodes.record(chunk, train_episodes, self.env.take_episodes(), self.env.take_failures())
            )
        row["wall_seconds"] = time.time() - self.t_start
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.points is not None:
            self.points.record(self.has_win, chunk, m, evaluation, seconds)
        if evaluation is not None and self.config.write_marl_eval:
            write_marl_eval(self.run_dir, self.config, self.has_win, {}, self.points)
        if self.logger:
            self.logger.log(row)
        if self.bar is not None:
            self.bar.update(1)
            self.shown.update(_progress(row, self.has_win))  # an evaluation's numbers stay until the next one
            self.bar.set_postfix(self.shown)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.logger:
            self.logger.close()


def _write_summary(config: Config, run_dir: Path, absolute: dict, points, has_win: bool) -> None:
    """curves.png and summary.json from the run's metrics lines (for a sweep also the points'
    summaries, their curves and the sweep table; with ``write_marl_eval`` marl_eval.json with the
    absolute metric), and the summary printed."""
    rows = read_jsonl(run_dir / "metrics.jsonl")
    if not rows:
        return
    summary = {**summarize(config, rows), **absolute}
    runs = {config.algo: rows}
    if points is not None:
        runs, table = points.finish(has_win)
        write_table(run_dir, table)
        summary["sweep_best"] = table[0] if table else None
    plot_runs(runs, run_dir / "curves.png", title=f"{config.algo} on {config.env}")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if config.write_marl_eval:
        write_marl_eval(run_dir, config, has_win, absolute, points)
    print(format_summary(summary, run_dir))
    if points is not None:
        print(format_table(table))


def format_summary(summary: dict, run_dir: Path) -> str:
    width = max(len(k) for k in summary)

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = [f"run folder: {run_dir}", "-" * (width + 20)]
    lines += [f"{k:<{width}}  {fmt(v)}" for k, v in summary.items()]
    return "\n".join(lines)

"""Command line: ``python -m jaxseq {train,compare,eval,render,report,envs,algos,config}``.

    python -m jaxseq train --env mpe:spread --algo mappo --total-steps 2000000 --num-seeds 4 \
        --seed 0 --sharing fups --out runs --set epochs=10 --set network=gru
    python -m jaxseq train --resume runs/mappo-mpe-spread-s0-20261121-101500
    python -m jaxseq train --resume runs/mappo-mpe-spread-s0-20261121-101500 --total-steps 4000000   # extend
    python -m jaxseq train --algo a2po --num-seeds 5 --sweep actor_lr=1e-4,3e-4,1e-3 --sweep clip_eps=0.1,0.2
    python -m jaxseq eval runs/mappo-mpe-spread-s0-20261121-101500 --checkpoint best --episodes 320
    python -m jaxseq eval runs/mappo-mpe-spread-s0-20261121-101500 --env 'mpe:spread?max_steps=50'
    python -m jaxseq render runs/mappo-mpe-spread-s0-20261121-101500 --out episode.gif --seed-index 1
    python -m jaxseq report runs/mappo-* runs/a2po-* --out report/ --marl-eval report/marl_eval.json
    python -m jaxseq compare --env 'mpe:spread?n=5' --preset mpe-fast --algos mappo happo a2po \
        a2po@selection_rule=cyclic --num-seeds 10 --out runs/spread-n5   # again into runs/spread-n5: resumes

Exit status: 0 done, 2 a bad config or path (nothing compiled), 3 the run diverged (a non-finite
loss or train state; the checkpoints hold the last finite state), 4 a file could not be written
(e.g. a full disk; what was written before is kept), 130 interrupted (Ctrl-C; every finished chunk
is checkpointed). Every error is one line on standard error.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
import time
import warnings
from pathlib import Path

from jaxseq import compile_cache
from jaxseq.config import Config, field_docs, field_types, parse_value
from jaxseq.errors import ConfigError, RunDiverged, RunInterrupted
from jaxseq.presets import PRESETS

#: CLI flags that map straight onto config fields.
_FLAGS = {
    "env": "env",
    "algo": "algo",
    "total_steps": "total_steps",
    "num_seeds": "num_seeds",
    "seed": "seed",
    "sharing": "sharing",
    "devices": "devices",
    "shard": "shard",
    "marl_eval": "write_marl_eval",
}


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in jaxseq's one-line form (exit status 2), not usage plus error."""

    def error(self, message: str):
        self.exit(2, f"jaxseq: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxseq", description="Sequential multi-agent policy optimisation in JAX")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="train and write a run folder")
    train.add_argument("--algo", help="algorithm (see `jaxseq algos`)")
    _add_config_flags(train)
    train.add_argument("--out", help="parent folder of the run folder (default: runs; not with --resume)")
    train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest intact checkpoint; --total-steps extends it, and "
        "--set may change eval_every, eval_envs, checkpoint_every (any other change is refused)",
    )
    train.add_argument(
        "--start-over", action="store_true", help="with --resume: a run folder without checkpoints trains from chunk 0"
    )
    train.add_argument("--devices", type=int, help="devices to shard over (default: all that divide the members)")
    train.add_argument("--shard", choices=("members", "envs"), help="split members (default) or each member's envs")
    train.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run (jax.distributed; SLURM, Open MPI and TPU are detected)",
    )
    train.add_argument("--coordinator", metavar="HOST:PORT", help="multi-process: process 0's address")
    train.add_argument("--num-processes", type=int, help="multi-process: number of processes")
    train.add_argument("--process-id", type=int, help="multi-process: this process's index")
    train.add_argument(
        "--init-timeout",
        type=int,
        default=300,
        metavar="SECONDS",
        help="multi-process: how long to wait for every process to join (default 300)",
    )
    train.add_argument(
        "--marl-eval",
        action="store_const",
        const=True,
        help="keep RUN_DIR/marl_eval.json (marl-eval's layout) up to date after every evaluation (write_marl_eval)",
    )
    train.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (offline unless WANDB_MODE)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev = sub.add_parser("eval", help="greedy evaluation of a saved run's policy, with 95%% intervals")
    ev.add_argument("run_dir", help="a run folder")
    ev.add_argument("--checkpoint", default="best", help="best (default), last, or a stored chunk number")
    ev.add_argument("--episodes", type=int, help="episodes per seed (default: the run's eval_episodes)")
    ev.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    ev.add_argument(
        "--env",
        metavar="ID",
        help="evaluate on this env id instead: same family, same agents, observation widths and actions",
    )
    ren = sub.add_parser(
        "render", help="one greedy episode of a saved run's policy as an animated GIF (MPE, SMAX, MA-MuJoCo)"
    )
    ren.add_argument("run_dir", help="a run folder")
    ren.add_argument("--out", help="the GIF to write (default: RUN_DIR/episode.gif)")
    ren.add_argument("--checkpoint", default="best", help="best (default), last, or a stored chunk number")
    ren.add_argument("--seed-index", type=int, default=0, help="which seed's policy (default 0, the first)")
    cmp = sub.add_parser(
        "compare",
        help="train several algorithms (or ALGO@FIELD=VALUE variants) on one env with the same seeds, then the "
        "results table, curves, the aggregate report and marl-eval JSON",
    )
    cmp.add_argument(
        "--algos",
        nargs="+",
        required=True,
        help="algorithms or variants, each optionally labelled LABEL=VARIANT for the tables and reports: "
        "mappo a2po 'A2PO cyclic=a2po@selection_rule=cyclic'",
    )
    _add_config_flags(cmp)
    cmp.add_argument(
        "--out",
        help="the experiment folder (default: runs/compare-<env>-<time>); running a command again into the same "
        "folder reuses its finished cells and resumes interrupted ones",
    )
    cmp.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the report (default 2000)")
    cmp.add_argument("--no-progress", action="store_true", help="no progress bar")
    for compiling in (train, ev, ren, cmp):
        compiling.add_argument(
            "--no-compile-cache",
            action="store_true",
            help=f"compile every program afresh, without JAX's compilation cache (or set {compile_cache.SWITCH}=off)",
        )
    rep = sub.add_parser(
        "report",
        help="IQM, median, mean (optimality gap for scores of a known range) with 95%% intervals over run "
        "folders (rliable)",
    )
    rep.add_argument(
        "run_dirs", nargs="+", help="finished run folders (each seed is one run; a sweep's folder: one row per point)"
    )
    rep.add_argument("--out", required=True, help="folder for report.md, report.json and the plots")
    rep.add_argument(
        "--labels",
        nargs="+",
        help="one algorithm label per run folder (default: its algo; a sweep's points add their values)",
    )
    rep.add_argument("--marl-eval", metavar="FILE", help="also write the runs as marl-eval JSON")
    rep.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    rep.add_argument(
        "--score",
        choices=("absolute", "final"),
        default="absolute",
        help="a seed's score: its absolute metric where the run has one (default), or its final greedy evaluation",
    )
    rep.add_argument(
        "--score-range",
        action="append",
        metavar="TASK=MIN,MAX",
        help="a task's known score range: normalise by it (for every task: also the optimality gap); repeatable",
    )
    sub.add_parser("envs", help="list env ids")
    sub.add_parser("algos", help="list algorithms")
    sub.add_parser("config", help="list config fields, defaults and presets")
    return parser


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that build a config, shared by ``train`` and ``compare``."""
    parser.add_argument("--preset", default="default", help=f"named preset: {sorted(PRESETS)}")
    parser.add_argument("--env", help="env id, e.g. mpe:spread, mpe:spread?n=5, smax:3m")
    parser.add_argument("--total-steps", type=int, help="environment steps per seed")
    parser.add_argument("--num-seeds", type=int, help="seeds run as one vmapped program")
    parser.add_argument("--seed", type=int, help="the key that seeds everything")
    parser.add_argument("--sharing", help="fups, paps or nops")
    parser.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="config fields (see `jaxseq config`): --set a=1 b=2; repeatable",
    )
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="FIELD=V1,V2,...",
        help="sweep a numeric field over values, all grid points x seeds in one program; repeatable (grid = product)",
    )


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The config fields the flags and ``--set`` name. A field both set and swept is refused."""
    overrides = {}
    for flag, field in _FLAGS.items():
        value = getattr(args, flag, None)  # compare has no --algo, --devices, --shard, --marl-eval
        if value is not None:
            overrides[field] = value
    for item in args.set:
        name, eq, text = item.partition("=")
        if not eq:
            raise ConfigError("set", f"expected FIELD=VALUE, got {item!r}")
        overrides[name.strip().replace("-", "_")] = parse_value(name.strip().replace("-", "_"), text)
    if getattr(args, "sweep", None):
        from jaxseq.sweep import parse_arg

        overrides["sweep"] = tuple(parse_arg(item) for item in args.sweep)
        for name, _ in overrides["sweep"]:
            if name in overrides:
                raise ConfigError(name, "is both swept (--sweep) and set (--set or a flag); give it in one place")
    return overrides


def config_from_args(args: argparse.Namespace):
    from jaxseq.configure import make_config  # imports JAX: lazily, so that --help stays fast

    return make_config(args.preset, **overrides_from_args(args))  # validated once, by train_run's make_train


def _evaluate(args: argparse.Namespace) -> None:
    import json

    from jaxseq.evaluation import evaluate_run, format_evaluation
    from jaxseq.paths import check_output_file

    if args.episodes is not None and args.episodes < 1:
        raise ConfigError("episodes", f"must be a positive integer, got {args.episodes}")
    if args.json:
        check_output_file(args.json, "json")
    result = evaluate_run(args.run_dir, args.checkpoint, args.episodes, args.env)
    print(format_evaluation(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def _render(args: argparse.Namespace) -> None:
    from jaxseq.render import render_run

    out = args.out or str(Path(args.run_dir) / "episode.gif")
    r = render_run(args.run_dir, out, args.checkpoint, args.seed_index)
    print(
        f"{r['out']}: {r['frames']} frames, one greedy episode of {r['length']} steps (return {r['return']:.4g}) "
        f"on {r['env']}, seed {r['seed_index']}, checkpoint {r['checkpoint']} (chunk {r['chunk']})"
    )


def _check_process_flags(args: argparse.Namespace) -> None:
    """The multi-process flags before JAX sees them: explicit flags go together (unless
    ``--distributed`` detects the rest), the address is HOST:PORT and the index lies in range."""
    flags = {"--coordinator": args.coordinator, "--num-processes": args.num_processes, "--process-id": args.process_id}
    missing = [name for name, value in flags.items() if value is None]
    if not args.distributed and len(missing) < 3 and missing:
        raise ConfigError(
            "distributed",
            f"--coordinator, --num-processes and --process-id go together (missing {', '.join(missing)}); "
            "or pass --distributed under SLURM, Open MPI or on TPU, where they are detected",
        )
    if args.coordinator is not None:
        host, colon, port = args.coordinator.rpartition(":")
        if not (host and colon and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError("coordinator", f"expected HOST:PORT (port 1-65535), got {args.coordinator!r}")
    if args.num_processes is not None and args.num_processes < 1:
        raise ConfigError("num_processes", f"must be at least 1, got {args.num_processes}")
    if args.process_id is not None:
        top = f"{args.num_processes}" if args.num_processes is not None else "the number of processes"
        if args.process_id < 0 or (args.num_processes is not None and args.process_id >= args.num_processes):
            raise ConfigError("process_id", f"must lie in [0, {top}), got {args.process_id}")
    if args.init_timeout < 1:
        raise ConfigError("init_timeout", f"must be a positive number of seconds, got {args.init_timeout}")


def _join_processes(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` when asked (``--distributed``, or the explicit process flags):
    says what it waits for, gives up after ``--init-timeout`` seconds, and honours Ctrl-C (the wait
    runs in a thread, since JAX's blocks signals)."""
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if not (args.distributed or any(v is not None for v in explicit)):
        return
    _check_process_flags(args)
    from jaxseq.distributed import initialize

    where = f"the coordinator at {args.coordinator}" if args.coordinator else "the cluster's coordinator"
    who = f"process {args.process_id} of {args.num_processes}" if args.process_id is not None else "a process"
    print(f"jaxseq: joining as {who}: waiting up to {args.init_timeout} s for {where}", file=sys.stderr, flush=True)
    outcome: list = []

    def join():
        try:
            # JAX's own timeout ends the process (a fatal error, no exception): it is set past ours.
            initialize(*explicit, timeout=args.init_timeout + 60)
            outcome.append(None)
        except Exception as err:  # JAX raises ValueError for flags it cannot complete
            outcome.append(err)

    worker = threading.Thread(target=join, daemon=True)
    worker.start()
    deadline = time.monotonic() + args.init_timeout
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(0.2)  # a short wait, so that Ctrl-C is seen
    if not outcome:
        raise ConfigError(
            "distributed",
            f"no answer from {where} within {args.init_timeout} s: is process 0 running and reachable? "
            "(--init-timeout sets the wait)",
        )
    if outcome[0] is not None:
        err = outcome[0]
        message = f"could not join the multi-process run ({type(err).__name__}: {' '.join(str(err).split())[:300]})"
        if args.coordinator is None or args.num_processes is None or args.process_id is None:
            message += "; no cluster (SLURM, Open MPI, TPU) supplied the rest: give --coordinator, --num-processes "
            message += "and --process-id"
        raise ConfigError("distributed", message)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line each (a checkpoint fallback is news, not a stack trace); JAX's warnings
    about compile cache entries once per kind (:func:`jaxseq.compile_cache.summarise`)."""
    text = compile_cache.summarise(str(message))
    if text is not None:
        print(f"jaxseq: warning: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv  # compare records its command line
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _dispatch(args)


def _print_config() -> None:
    """``jaxseq config``: every field with its type, default and help, then the presets."""
    docs, types_ = field_docs(), field_types()
    defaults = Config().to_dict()
    for name, kind in types_.items():
        print(f"{name:18s} {kind.__name__:5s} = {defaults[name]!r:14}  {docs.get(name, '')}")
    print("\npresets:")
    for name, values in PRESETS.items():
        print(f"  {name}: {values}")


def _train(args: argparse.Namespace) -> None:
    """``jaxseq train``: a new run, or ``--resume`` one (which keeps its config and its folder)."""
    from jaxseq.run import train_run

    _join_processes(args)
    if not args.resume:
        out = "runs" if args.out is None else args.out
        train_run(config_from_args(args), out=out, use_wandb=args.wandb, progress=not args.no_progress)
        return
    if args.preset != "default":
        raise ConfigError("preset", "cannot be given with --resume (the run keeps its config)")
    if args.out is not None:
        raise ConfigError("out", "cannot be given with --resume (the run continues in its own folder)")
    train_run(
        resume=args.resume,
        overrides=overrides_from_args(args),
        start_over=args.start_over,
        use_wandb=args.wandb,
        progress=not args.no_progress,
    )


def _compare(args: argparse.Namespace) -> None:
    """``jaxseq compare``: every algorithm of ``--algos`` on the config the other flags build."""
    from jaxseq.experiment import compare, default_folder

    if args.reps < 1:
        raise ConfigError("reps", f"must be a positive integer, got {args.reps}")
    base = config_from_args(args)
    out = args.out or default_folder(base)
    command = shlex.join(["python", "-m", "jaxseq", *args.argv])
    folder = compare(base, args.algos, out, progress=not args.no_progress, reps=args.reps, command=command)
    print(f"results table, curves, report and marl-eval JSON in {folder}")


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command; every failure a user can cause is one line on standard error and an exit status."""
    if getattr(args, "no_compile_cache", False):
        compile_cache.disable()
    try:
        if args.command == "envs":
            from jaxseq.envs import list_envs

            for env_id, desc in list_envs():
                print(f"{env_id:28s} {desc}")
        elif args.command == "algos":
            from jaxseq.algorithms import ALGORITHMS

            for name, algo in ALGORITHMS.items():
                print(f"{name:14s} {algo.description}")
        elif args.command == "config":
            _print_config()
        elif args.command == "eval":
            _evaluate(args)
        elif args.command == "render":
            _render(args)
        elif args.command == "report":
            from jaxseq.report import format_report, parse_score_ranges, report

            ranges = parse_score_ranges(args.score_range)
            result = report(
                args.run_dirs, args.out, args.labels, args.reps, args.marl_eval, score_ranges=ranges, score=args.score
            )
            print(format_report(result))
        elif args.command == "train":
            _train(args)
        elif args.command == "compare":
            _compare(args)
    except ConfigError as err:
        print(f"jaxseq: error: {err}", file=sys.stderr)
        return 2
    except RunDiverged as err:
        print(f"jaxseq: error: {err}", file=sys.stderr)
        return 3
    except OSError as err:  # a full disk, a folder made read-only under a run: what was written is kept
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"jaxseq: error: {err.strerror or err}{where}; what was written before is kept", file=sys.stderr)
        return 4
    except RunInterrupted as err:
        print(f"jaxseq: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("jaxseq: interrupted before any chunk ran; nothing was written", file=sys.stderr)
        return 130
    return 0

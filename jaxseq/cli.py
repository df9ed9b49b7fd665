"""Command line: ``python -m jaxseq {train,eval,render,report,envs,algos,config}``.

    python -m jaxseq train --env mpe:spread --algo mappo --total-steps 2000000 --num-seeds 4 \
        --seed 0 --sharing fups --out runs --set epochs=10 --set network=gru
    python -m jaxseq train --resume runs/mappo-mpe-spread-s0-20261121-101500
    python -m jaxseq train --resume runs/mappo-mpe-spread-s0-20261121-101500 --total-steps 4000000   # extend
    python -m jaxseq train --algo a2po --num-seeds 5 --sweep actor_lr=1e-4,3e-4,1e-3 --sweep clip_eps=0.1,0.2
    python -m jaxseq eval runs/mappo-mpe-spread-s0-20261121-101500 --checkpoint best --episodes 320
    python -m jaxseq eval runs/mappo-mpe-spread-s0-20261121-101500 --env 'mpe:spread?max_steps=50'
    python -m jaxseq render runs/mappo-mpe-spread-s0-20261121-101500 --out episode.gif --seed-index 1
    python -m jaxseq report runs/mappo-* runs/a2po-* --out report/ --marl-eval report/marl_eval.json

Exit status: 0 done, 2 a bad config or path (nothing compiled), 3 the run diverged (non-finite
losses or parameters; the checkpoints hold the last finite state), 130 interrupted (Ctrl-C; every
finished chunk is checkpointed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxseq.config import PRESETS, field_docs, field_types, make_config, parse_value
from jaxseq.errors import ConfigError, RunDiverged

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxseq", description="Sequential multi-agent policy optimisation in JAX")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train and write a run folder")
    train.add_argument("--preset", default="default", help=f"named preset: {sorted(PRESETS)}")
    train.add_argument("--env", help="env id, e.g. mpe:spread, mpe:spread?n=5, smax:3m")
    train.add_argument("--algo", help="algorithm (see `jaxseq algos`)")
    train.add_argument("--total-steps", type=int, help="environment steps per seed")
    train.add_argument("--num-seeds", type=int, help="seeds run as one vmapped program")
    train.add_argument("--seed", type=int, help="the key that seeds everything")
    train.add_argument("--sharing", help="fups, paps or nops")
    train.add_argument("--out", default="runs", help="parent folder of the run folder (default: runs)")
    train.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="config fields (see `jaxseq config`): --set a=1 b=2; repeatable",
    )
    train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest intact checkpoint; --total-steps extends it, and "
        "--set may change eval_every, eval_envs, checkpoint_every (any other change is refused)",
    )
    train.add_argument(
        "--start-over", action="store_true", help="with --resume: a run folder without checkpoints trains from chunk 0"
    )
    train.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="FIELD=V1,V2,...",
        help="sweep a numeric field over values, all grid points x seeds in one program; repeatable (grid = product)",
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
    rep = sub.add_parser(
        "report", help="IQM, median, mean, optimality gap with 95%% intervals over run folders (rliable)"
    )
    rep.add_argument("run_dirs", nargs="+", help="finished run folders (each seed is one run)")
    rep.add_argument("--out", required=True, help="folder for report.md, report.json and the plots")
    rep.add_argument("--labels", nargs="+", help="one algorithm label per run folder (default: its algo)")
    rep.add_argument("--marl-eval", metavar="FILE", help="also write the runs as marl-eval JSON")
    rep.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    sub.add_parser("envs", help="list env ids")
    sub.add_parser("algos", help="list algorithms")
    sub.add_parser("config", help="list config fields, defaults and presets")
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The config fields the flags and ``--set`` name."""
    overrides = {}
    for flag, field in _FLAGS.items():
        value = getattr(args, flag)
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
    return overrides


def config_from_args(args: argparse.Namespace):
    return make_config(args.preset, **overrides_from_args(args))  # validated once, by train_run's make_train


def _evaluate(args: argparse.Namespace) -> None:
    import json

    from jaxseq.evaluation import evaluate_run, format_evaluation

    if args.episodes is not None and args.episodes < 1:
        raise ConfigError("episodes", f"must be a positive integer, got {args.episodes}")
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


def _join_processes(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` when asked (``--distributed``, or any explicit process flag)."""
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if args.distributed or any(v is not None for v in explicit):
        from jaxseq.distributed import initialize

        initialize(*explicit)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
            docs, types_ = field_docs(), field_types()
            defaults = make_config().to_dict()
            for name, kind in types_.items():
                print(f"{name:18s} {kind.__name__:5s} = {defaults[name]!r:14}  {docs.get(name, '')}")
            print("\npresets:")
            for name, values in PRESETS.items():
                print(f"  {name}: {values}")
        elif args.command == "eval":
            _evaluate(args)
        elif args.command == "render":
            _render(args)
        elif args.command == "report":
            from jaxseq.report import format_report, report

            print(format_report(report(args.run_dirs, args.out, args.labels, args.reps, args.marl_eval)))
        elif args.command == "train":
            from jaxseq.run import train_run

            _join_processes(args)

            if args.resume:
                if args.preset != "default":
                    raise ConfigError("preset", "cannot be given with --resume (the run keeps its config)")
                train_run(
                    resume=args.resume,
                    overrides=overrides_from_args(args),
                    start_over=args.start_over,
                    use_wandb=args.wandb,
                    progress=not args.no_progress,
                )
            else:
                train_run(config_from_args(args), out=args.out, use_wandb=args.wandb, progress=not args.no_progress)
    except ConfigError as err:
        print(f"jaxseq: error: {err}", file=sys.stderr)
        return 2
    except RunDiverged as err:
        print(f"jaxseq: error: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("jaxseq: interrupted; finished chunks are checkpointed (resume with --resume RUN_DIR)", file=sys.stderr)
        return 130
    return 0

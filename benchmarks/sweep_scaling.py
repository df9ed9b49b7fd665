"""Members per second: env steps of all members per second of a whole training chunk, against the
number of members (grid points x seeds) and of devices they are sharded over (``shard=members``).

The device count is fixed when JAX starts, so each device count runs in a subprocess; on CPU its
devices are forced host devices (``--xla_force_host_platform_device_count``), which share the
machine's cores: there the table shows the cost of sharding, not a speed-up. On a machine with
several accelerators the same command uses the real devices. Compile time is excluded (one
warm-up chunk first). Members are a sweep of ``actor_lr`` over ``members / seeds`` points.

Prints a table and appends it, with the device, the command and the date, to
``benchmarks/results/sweep_scaling.md``.

    python benchmarks/sweep_scaling.py                                  # 1/4/16/64 members, 1/2/4 devices
    python benchmarks/sweep_scaling.py --members 4 16 --devices 1 2 --num-envs 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def measure(members: int, devices: int, args) -> dict:
    """One (members, devices) cell: seconds per chunk after a warm-up, and env steps per second."""
    import jax

    from jaxseq.configure import make_config
    from jaxseq.train import make_train

    seeds = min(members, args.seeds)
    points = members // seeds
    config = make_config(
        env=args.env,
        algo=args.algo,
        num_seeds=seeds,
        sweep={"actor_lr": tuple(1e-4 * (1 + i) for i in range(points))} if points > 1 else (),
        num_envs=args.num_envs,
        rollout_length=args.rollout_length,
        sequence_length=8,
        updates_per_chunk=args.updates,
        total_steps=args.num_envs * args.rollout_length * args.updates,
        devices=devices,
    )
    trainer = make_train(config)
    state = trainer.init(jax.random.PRNGKey(0))
    program = trainer.compile_chunk(state)
    state, _ = jax.block_until_ready(program(state))  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        state, m = program(state)
    jax.block_until_ready(m)
    seconds = (time.perf_counter() - t0) / args.repeats
    steps = members * args.num_envs * args.rollout_length * args.updates
    return {"members": members, "devices": devices, "seconds": seconds, "sps": steps / seconds}


def _worker(args) -> None:
    """Every cell of one device count, as JSON lines on stdout."""
    import jaxmarl.environments  # noqa: F401  (it resets stdout when first imported)

    for members in args.members:
        if members % args.worker:
            continue  # the members must divide over the devices
        print(json.dumps(measure(members, args.worker, args)), flush=True)


def _run_device_count(devices: int, argv: list[str]) -> list[dict]:
    import jax

    env = dict(os.environ)
    if jax.devices()[0].platform == "cpu":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), *argv, "--worker", str(devices)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"the {devices}-device run failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="mpe:spread")
    parser.add_argument("--algo", default="mappo")
    parser.add_argument("--members", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--devices", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per grid point (members = points x seeds)")
    parser.add_argument("--num-envs", type=int, default=16, help="environments per member")
    parser.add_argument("--rollout-length", type=int, default=32)
    parser.add_argument("--updates", type=int, default=2, help="updates per timed chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return

    from harness import header, publish

    raw = sys.argv[1:] if argv is None else argv
    cells = {(r["members"], r["devices"]): r for d in args.devices for r in _run_device_count(d, raw)}
    head = header(
        "sweep_scaling.py",
        argv,
        f"{args.algo.upper()} on {args.env}, {args.num_envs} envs x {args.rollout_length} steps per member per "
        f"update, {args.updates} updates per chunk; members = actor_lr points x up to {args.seeds} seeds, "
        "sharded over the devices (shard=members); env steps of all members per second, compile excluded; "
        "n/a: the members do not divide over the devices",
    )
    table = ["| members | " + " | ".join(f"{d} device{'s' * (d > 1)}" for d in args.devices) + " |"]
    table.append("|---" * (len(args.devices) + 1) + "|")
    for m in args.members:
        row = [f"{cells[(m, d)]['sps']:,.0f}" if (m, d) in cells else "n/a" for d in args.devices]
        table.append(f"| {m} | " + " | ".join(row) + " |")
    publish(head + "\n".join(table) + "\n\n", "sweep_scaling.md", not args.no_save)


if __name__ == "__main__":
    main()

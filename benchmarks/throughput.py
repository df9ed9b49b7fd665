"""Throughput: environment steps per second of (a) the rollout alone and (b) the whole training
iteration (rollout + GAE + epochs x minibatches), for MAPPO, with 1, 4 and 16 seeds in one program.

Prints a table and appends it, with the device, the command and the date, to
``benchmarks/results/throughput.md``. Steps are counted over all seeds (seeds x envs x rollout
steps x updates); compile time is excluded (one warm-up call first).

    python benchmarks/throughput.py                        # smax:3m and mpe:spread, 1/4/16 seeds
    python benchmarks/throughput.py --envs mpe:spread --seeds 1 4 --num-envs 64
"""

from __future__ import annotations

import argparse
import time

import jax

from jaxseq.configure import make_config
from jaxseq.train import make_train

from harness import header, publish


def _timed(fn, arg, repeats: int) -> float:
    jax.block_until_ready(fn(arg))  # compile and warm up
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn(arg)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / repeats


def measure(env: str, seeds: int, num_envs: int, rollout_length: int, updates: int, repeats: int) -> dict:
    cfg = make_config(
        env=env,
        algo="mappo",
        num_seeds=seeds,
        num_envs=num_envs,
        rollout_length=rollout_length,
        sequence_length=8 if rollout_length % 8 == 0 else 1,
        updates_per_chunk=updates,
        total_steps=num_envs * rollout_length * updates,
    )
    trainer = make_train(cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    rollout = jax.jit(jax.vmap(lambda s: trainer.rollout(s)[1].rewards))
    steps_rollout = seeds * num_envs * rollout_length
    t_rollout = _timed(rollout, state, repeats)
    t_chunk = _timed(lambda s: trainer.chunk(s)[1], state, repeats)
    return {
        "env": env,
        "seeds": seeds,
        "rollout_sps": steps_rollout / t_rollout,
        "train_sps": steps_rollout * updates / t_chunk,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["smax:3m", "mpe:spread"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--num-envs", type=int, default=32, help="environments per seed")
    parser.add_argument("--rollout-length", type=int, default=64)
    parser.add_argument("--updates", type=int, default=2, help="updates per timed chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    rows = [
        measure(e, s, args.num_envs, args.rollout_length, args.updates, args.repeats)
        for e in args.envs
        for s in args.seeds
    ]
    head = header(
        "throughput.py",
        argv,
        f"MAPPO, MLP, FuPS, {args.num_envs} envs x {args.rollout_length} steps per "
        f"seed per update, 5 epochs x 1 minibatch; steps summed over seeds",
    )
    table = ["| env | seeds | rollout steps/s | training steps/s | training / rollout |", "|---|---|---|---|---|"]
    for r in rows:
        table.append(
            f"| {r['env']} | {r['seeds']} | {r['rollout_sps']:,.0f} | {r['train_sps']:,.0f} | "
            f"{r['train_sps'] / r['rollout_sps']:.2f} |"
        )
    publish(head + "\n".join(table) + "\n\n", "throughput.md", not args.no_save)


if __name__ == "__main__":
    main()

"""Host-environment steps per second through the bridge against the raw env loop, with 1, 2, 4 and
8 workers: local processes (``pool=local``) and, where Ray is installed, Ray actors (``pool=ray``,
on a local Ray runtime).

- raw: W processes, each stepping its share of the envs in a plain Python loop (the adapter's
  ``step`` with random actions, ``reset`` where an episode ends); no JAX, no IPC. Each process
  first plays ``steps`` warm-up steps, then all start together (a barrier); rate = all steps /
  the slowest process's time.
- compiled: the same envs as a ``BridgeEnv`` with W workers, stepped from one compiled ``lax.scan``
  of vmapped ``env.step`` with random actions; a first call of ``steps`` steps (compile, start)
  is not timed, so both sides time the same stretch of the episodes.
- from Python: the same pool's ``step`` called in a Python loop with NumPy actions: the pool's own
  cost, without the compiled side and the callback's entry.
- overhead = 1 - compiled / raw; vs local = the time of the compiled steps over the local pool's
  (the first pool measured).

    python benchmarks/bridge_throughput.py                                  # pz:simple_spread, 16 envs
    python benchmarks/bridge_throughput.py --env grf:5_vs_5 --num-envs 8 --steps 300
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import time

import jax
import numpy as np

from jaxseq.envs import make_env

from harness import header, publish


def _raw_loop(factory, max_steps, count, steps, num_actions, seed, barrier, results):
    from jaxseq.hostenv.worker import build

    envs = [build(factory) for _ in range(count)]
    rng = np.random.default_rng(seed)
    for i, env in enumerate(envs):
        env.reset(seed + i)
    t = [0] * count

    def play():
        for _ in range(steps):
            for i, env in enumerate(envs):
                _, _, terminated, truncated, _ = env.step(rng.integers(0, num_actions, env.spec.num_agents))
                t[i] += 1
                if terminated or truncated or t[i] >= max_steps:
                    env.reset(int(rng.integers(1 << 31)))
                    t[i] = 0

    play()  # warm-up, as the bridge's untimed first call
    barrier.wait()
    start = time.perf_counter()
    play()
    results.put(time.perf_counter() - start)


def raw_rate(env, workers: int, num_envs: int, steps: int) -> float:
    """Env steps per second of ``workers`` processes stepping ``num_envs`` envs in a plain loop."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers + 1), ctx.Queue()
    shares = np.array_split(np.arange(num_envs), workers)
    procs = [
        ctx.Process(
            target=_raw_loop,
            args=(env.factory, env.spec.max_steps, len(share), steps, env.spec.num_actions, 1000 * w, barrier, results),
        )
        for w, share in enumerate(shares)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    seconds = max(results.get() for _ in procs)
    for p in procs:
        p.join()
    return num_envs * steps / seconds


def bridge_rates(env_id: str, pool: str, workers: int, num_envs: int, steps: int) -> tuple[float, float]:
    """Env steps per second of ``num_envs`` bridge envs on ``workers`` workers of kind ``pool``:
    stepped from a compiled scan, and the same pool stepped from a Python loop (no JAX: what the
    pool costs by itself)."""
    env = make_env(f"{env_id}{'&' if '?' in env_id else '?'}workers={workers}&pool={pool}")
    n, a = env.spec.num_agents, env.spec.num_actions

    @jax.jit
    def run(state, key):
        def step(state, k):
            k_act, k_env = jax.random.split(k)
            actions = jax.random.randint(k_act, (num_envs, n), 0, a)
            state, out = jax.vmap(env.step)(jax.random.split(k_env, num_envs), state, actions)
            return state, out.reward.sum()

        return jax.lax.scan(step, state, jax.random.split(key, steps))

    try:
        state, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), num_envs))
        state, _ = jax.block_until_ready(run(state, jax.random.PRNGKey(1)))  # compile, start the games
        t0 = time.perf_counter()
        state, _ = jax.block_until_ready(run(state, jax.random.PRNGKey(2)))
        compiled = num_envs * steps / (time.perf_counter() - t0)
        handles, rng = np.asarray(state.inner.handle), np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(steps):
            seeds = rng.integers(0, 1 << 31, num_envs).astype(np.uint32)
            handles, _ = env.pool.step(handles, seeds, rng.integers(0, a, (num_envs, n)))
        return compiled, num_envs * steps / (time.perf_counter() - t0)
    finally:
        env.close()


def _default_pools() -> list[str]:
    return ["local", "ray"] if importlib.util.find_spec("ray") else ["local"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="pz:simple_spread")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--num-envs", type=int, default=16, help="envs shared by the workers")
    parser.add_argument("--steps", type=int, default=500, help="steps per env per timed call")
    parser.add_argument("--pools", nargs="+", choices=("local", "ray"), default=_default_pools())
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    table = [
        "| workers | envs | raw loop steps/s | pool | from Python steps/s | compiled steps/s | overhead | vs local |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in args.workers:
        raw = raw_rate(make_env(args.env), w, args.num_envs, args.steps)
        local = None
        for pool in args.pools:
            compiled, python = bridge_rates(args.env, pool, w, args.num_envs, args.steps)
            local = local or compiled
            cells = [w, args.num_envs, f"{raw:,.0f}", pool, f"{python:,.0f}", f"{compiled:,.0f}"]
            cells += [f"{1 - compiled / raw:+.1%}", f"{local / compiled:.2f}x time"]
            table.append("| " + " | ".join(map(str, cells)) + " |")
            print(table[-1], flush=True)
    head = header(
        "bridge_throughput.py",
        argv,
        f"{args.env}, uniform random actions, {args.steps} steps per env, auto-reset included",
    )
    publish(head + "\n".join(table) + "\n\n", "bridge_throughput.md", not args.no_save)


if __name__ == "__main__":
    main()

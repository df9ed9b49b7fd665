"""Environment steps per second of the compiled env alone (auto-reset included, random actions, no
policy), for 1 and 64 envs in one program; by default every multi-agent MuJoCo task.

Prints a table and appends it, with the device, the command and the date, to
``benchmarks/results/env_steps.md``. One step = one joint action in one env; compile time is
excluded (one warm-up call first).

    python benchmarks/env_steps.py                                   # every mamujoco task, 1 and 64 envs
    python benchmarks/env_steps.py --envs mamujoco:Hopper-3x1 smax:3m --num-envs 1 64 1024
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from jaxseq.envs import make_env
from jaxseq.envs.mamujoco_robots import task_names

from harness import header, publish


def steps_per_second(env_id: str, num_envs: int, steps: int, repeats: int) -> float:
    env = make_env(env_id)
    spec = env.spec

    @jax.jit
    def run(key):
        state, obs = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def step(carry, k):
            state, obs = carry
            k_act, k_env = jax.random.split(k)
            if spec.continuous:
                a = jax.random.uniform(k_act, (num_envs, spec.num_agents, spec.num_actions), minval=-1.0, maxval=1.0)
            else:
                a = jax.random.categorical(k_act, jnp.where(obs.avail, 0.0, -1e9))
            state, out = jax.vmap(env.step)(jax.random.split(k_env, num_envs), state, a)
            return (state, out.obs), out.reward.sum()

        _, rewards = jax.lax.scan(step, (state, obs), jax.random.split(key, steps))
        return rewards.sum()

    jax.block_until_ready(run(jax.random.PRNGKey(0)))
    t0 = time.perf_counter()
    for r in range(repeats):
        out = run(jax.random.PRNGKey(r + 1))
    jax.block_until_ready(out)
    return num_envs * steps * repeats / (time.perf_counter() - t0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=[f"mamujoco:{t}" for t in task_names()])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--steps", type=int, default=200, help="steps per env per timed call")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    table = [
        "| env | " + " | ".join(f"{n} envs: steps/s" for n in args.num_envs) + " |",
        "|---|" + "---|" * len(args.num_envs),
    ]
    for env_id in args.envs:
        rates = [steps_per_second(env_id, n, args.steps, args.repeats) for n in args.num_envs]
        table.append(f"| {env_id} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |")
        print(table[-1], flush=True)
    head = header(
        "env_steps.py",
        argv,
        f"uniform random actions, {args.steps} steps per env per call, {args.repeats} timed calls, auto-reset included",
    )
    publish(head + "\n".join(table) + "\n\n", "env_steps.md", not args.no_save)


if __name__ == "__main__":
    main()

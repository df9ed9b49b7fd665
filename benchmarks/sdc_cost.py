"""Cost of OPSPO's state-distribution correction (SDC), measured in one run.

Update-phase time (advantages, the agent-by-agent actor update, the critic; no rollout) of OPSPO
on one fixed batch without SDC, with step-wise weighted IS, and with learned omega-nets (OPSPO paper
Alg. 2 with ``omega_n`` behaviour batches in ring buffers), relative to OPSPO without SDC; MAPPO on
the same batch for scale. And the memory the ring buffers and the mixture cache hold per seed.

Uses ``mpe:spread?n=N``, NoPS networks (the setting where OPSPO paper learns omega). Appends the
tables, with device, command and date, to ``benchmarks/results/sdc_cost.md``.

    python benchmarks/sdc_cost.py
"""

from __future__ import annotations

import argparse

import jax

from harness import header, publish
from sequential_scaling import add_timing_args, chosen, make_trainer, relative_update_times

#: (label, algorithm, overrides); the first is the reference of the ratios.
VARIANTS = (
    ("no SDC", "opspo", {"opspo_sdc": False}),
    ("OPSPO WIS", "opspo", {"opspo_sdc_method": "wis"}),
    ("OPSPO omega-net", "opspo", {"opspo_sdc_method": "bch"}),
    ("MAPPO", "mappo", {}),
)


def ring_bytes(n: int, num_envs: int, rollout_length: int, omega_n: int) -> int:
    trainer = make_trainer("opspo", n, num_envs, rollout_length, opspo_sdc_method="bch", omega_n=omega_n)
    state = jax.tree.map(lambda x: x[0], trainer.init(jax.random.PRNGKey(0)))
    return trainer.state_weights.memory_bytes(state.extra["density"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", type=int, default=[3, 5])
    parser.add_argument("--omega-n", nargs="+", type=int, default=[10, 20])
    add_timing_args(parser, VARIANTS, num_envs=32, rollout_length=64)
    args = parser.parse_args(argv)

    head = header(
        "sdc_cost.py",
        argv,
        f"mpe:spread?n=N, NoPS MLP, {args.num_envs} envs x {args.rollout_length} "
        "steps, 5 epochs x 2 minibatches; omega-net defaults omega_n=10, omega_e=10, f_e=5, batch 256",
    )
    lines = ["### update phase (no rollout) on the same batch, relative to OPSPO without SDC", ""]
    lines += relative_update_times(
        chosen(VARIANTS, args.variants), args.agents, args.num_envs, args.rollout_length, args.repeats
    )
    lines += [
        "",
        "### ring buffers + mixture cache, bytes per seed",
        "",
        "| agents | " + " | ".join(f"omega_n = {w}" for w in args.omega_n) + " |",
        "|---" * (1 + len(args.omega_n)) + "|",
    ]
    for n in args.agents:
        sizes = [ring_bytes(n, args.num_envs, args.rollout_length, w) for w in args.omega_n]
        lines.append(f"| {n} | " + " | ".join(f"{b / 2**20:.1f} MiB" for b in sizes) + " |")
    publish(head + "\n".join(lines) + "\n\n", "sdc_cost.md", not args.no_save)


if __name__ == "__main__":
    main()

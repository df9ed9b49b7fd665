"""Cost of the agent-by-agent update as the number of agents grows, measured in one run.

(a) Compile time and compiled program size of one training update for A2PO, n = 3, 12, 27 agents:
    the sequential scheme is a ``lax.scan`` over positions with dynamic indexing into stacked
    parameters, so neither should grow with n (beyond the env's own size).
(b) Update-phase time (advantages + actor + critic on one fixed batch, no rollout) of HAPPO, A2PO
    and A2PO in 3 agent blocks relative to MAPPO on the same batch, n = 3, 8, 27; with
    ``--iteration`` the whole iteration (rollout + update) instead.

Uses ``mpe:spread?n=N`` (N agents, N landmarks), NoPS MLP networks by default (``--sharing``,
``--network`` for the others: under FuPS and PaPS the sequential update re-evaluates every
agent's ratio after each unit), a small batch. Appends the tables,
with device, command and date, to ``benchmarks/results/sequential_scaling.md``.

    python benchmarks/sequential_scaling.py
"""

from __future__ import annotations

import argparse
import time

import jax

from jaxseq.configure import make_config
from jaxseq.train import make_train

from harness import header, publish

#: (label, algorithm, overrides) timed in (b); the first is the reference.
VARIANTS = (
    ("MAPPO", "mappo", {}),
    ("HAPPO", "happo", {}),
    ("A2PO", "a2po", {}),
    ("A2PO 3 blocks", "a2po", {"agent_blocks": 3}),
)


def make_trainer(algo: str, n: int, num_envs: int, rollout_length: int, **overrides):
    cfg = make_config(
        env=f"mpe:spread?n={n}",
        algo=algo,
        num_envs=num_envs,
        rollout_length=rollout_length,
        sequence_length=8,
        epochs=5,
        num_minibatches=2,
        updates_per_chunk=1,
        total_steps=num_envs * rollout_length,
        **{"sharing": "nops", **overrides},
    )
    return make_train(cfg)


def compile_cost(algo: str, n: int, num_envs: int, rollout_length: int, **overrides) -> dict:
    trainer = make_trainer(algo, n, num_envs, rollout_length, **overrides)
    state = jax.tree.map(lambda x: x[0], trainer.init(jax.random.PRNGKey(0)))
    t0 = time.perf_counter()
    lowered = jax.jit(trainer.update).lower(state)
    compiled = lowered.compile()
    seconds = time.perf_counter() - t0
    return {
        "algo": algo,
        "n": n,
        "compile_s": seconds,
        "hlo_chars": len(lowered.as_text()),
        "compiled_chars": len(compiled.as_text() or ""),
    }


def update_time(
    algo: str, n: int, num_envs: int, rollout_length: int, repeats: int, iteration: bool = False, **overrides
) -> float:
    """Seconds of one update phase (``Trainer.learn`` on one fixed batch), or with ``iteration`` of
    one whole iteration (``Trainer.update``: rollout + update), mean of ``repeats`` calls."""
    trainer = make_trainer(algo, n, num_envs, rollout_length, **overrides)
    state = jax.tree.map(lambda x: x[0], trainer.init(jax.random.PRNGKey(0)))
    if iteration:
        program, args = jax.jit(lambda s: trainer.update(s)[1]), (state,)
    else:
        state, batch, _ = jax.jit(trainer.rollout)(state)
        program, args = jax.jit(lambda s, b: trainer.learn(s, b)[1]), (state, batch)
    jax.block_until_ready(program(*args))
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = program(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / repeats


def add_timing_args(parser, variants, num_envs: int, rollout_length: int) -> None:
    """The options of the update-time tables (this script and sdc_cost.py)."""
    parser.add_argument("--num-envs", type=int, default=num_envs)
    parser.add_argument("--rollout-length", type=int, default=rollout_length)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=[label for label, _, _ in variants],
        help="labels of the timed variants (the first is the reference)",
    )
    parser.add_argument("--no-save", action="store_true")


def chosen(variants, labels: list[str]) -> list:
    """The ``(label, algo, overrides)`` variants named in ``labels``, in that order."""
    by_label = {v[0]: v for v in variants}
    unknown = [x for x in labels if x not in by_label]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; allowed: {list(by_label)}")
    return [by_label[x] for x in labels]


def relative_update_times(
    variants, agents, num_envs: int, rollout_length: int, repeats: int, iteration: bool = False, **common
) -> list[str]:
    """Markdown rows: per number of agents, the update time (``iteration``: the iteration's) of every
    ``(label, algo, overrides)`` variant, with the ``common`` overrides, and its ratio to the first
    one's, all timed in this run."""
    labels = [label for label, _, _ in variants]
    lines = [
        "| agents | "
        + " | ".join(f"{x} s" for x in labels)
        + " | "
        + " | ".join(f"{x} / {labels[0]}" for x in labels[1:])
        + " |",
        "|---" * (2 * len(labels)) + "|",
    ]
    for n in agents:
        t = [
            update_time(algo, n, num_envs, rollout_length, repeats, iteration, **{**common, **extra})
            for _, algo, extra in variants
        ]
        lines.append(
            f"| {n} | "
            + " | ".join(f"{x:.3f}" for x in t)
            + " | "
            + " | ".join(f"{x / t[0]:.2f}" for x in t[1:])
            + " |"
        )
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compile-agents", nargs="*", type=int, default=[3, 12, 27], help="none: skip (a)")
    parser.add_argument("--time-agents", nargs="+", type=int, default=[3, 8, 27])
    parser.add_argument("--sharing", default="nops", choices=("nops", "fups", "paps"))
    parser.add_argument("--network", default="mlp", choices=("mlp", "gru"))
    parser.add_argument("--iteration", action="store_true", help="time the whole iteration (rollout + update)")
    add_timing_args(parser, VARIANTS, num_envs=16, rollout_length=32)
    args = parser.parse_args(argv)
    common = {"sharing": args.sharing, "network": args.network}

    head = header(
        "sequential_scaling.py",
        argv,
        f"mpe:spread?n=N, {args.sharing} {args.network}, {args.num_envs} envs x {args.rollout_length} steps, "
        "5 epochs x 2 minibatches, chunk length 8",
    )
    lines = []
    if args.compile_agents:
        lines += [
            "### (a) one A2PO update: compile time and program size",
            "",
            "| agents | compile s | lowered HLO chars | compiled HLO chars |",
            "|---|---|---|---|",
        ]
    for n in args.compile_agents:
        r = compile_cost("a2po", n, args.num_envs, args.rollout_length, **common)
        lines.append(f"| {n} | {r['compile_s']:.1f} | {r['hlo_chars']:,} | {r['compiled_chars']:,} |")
    phase = "whole iteration (rollout + update)" if args.iteration else "update phase (no rollout) on the same batch"
    lines += ["", f"### (b) {phase}, relative to MAPPO", ""]
    lines += relative_update_times(
        chosen(VARIANTS, args.variants),
        args.time_agents,
        args.num_envs,
        args.rollout_length,
        args.repeats,
        args.iteration,
        **common,
    )
    publish(head + "\n".join(lines) + "\n\n", "sequential_scaling.md", not args.no_save)


if __name__ == "__main__":
    main()

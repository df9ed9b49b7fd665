"""Where one training iteration's time goes: jaxseq's compiled sub-programs timed on the same batch.

For each algorithm (MAPPO, A2PO, HAPPO by default) on one seed, each phase is jitted on its own
and timed (median of ``--repeats`` calls after a warm-up call) on one fixed batch:

- ``rollout``: ``Trainer.rollout`` (``rollout_length`` steps of ``num_envs`` envs);
- ``critic forward``: the critic over the batch's T x B observations, one GRU/MLP pass; the
  rollout made two such passes per step until issue 19's second round (the value of the
  observation, and of the true next one for ``next_value_preds``), so this is about what the
  second one cost; it now runs only on steps where an env was truncated;
- ``estimators``: ``Engine.returns_inputs`` + ``Engine.estimate`` (no preceding ratio);
- ``actor update``: the scheme's ``run`` (for the sequential ones it includes their log ratios
  and estimates per unit), and ``actor update, SGD step``: the same with each Adam step (and its
  gradient-norm clip) replaced by a plain SGD step, so the difference is the optimiser's share;
- ``critic fit``: ``Engine.fit_critic``, and the same with an SGD step;
- ``learn``: estimators + actor + critic as one program (``Trainer.learn``);
- ``iteration``: rollout + learn as one program (``Trainer.update``); shares are of this.

``--candidates`` also times MAPPO's whole iteration with one switch changed at a time
(``shared_optimizer=one``, ``value_norm=false``, ``layer_norm=false``, ``death_mask=false``).
``--layout`` times the GRU replay layouts on one minibatch's shapes, outside jaxseq: one
gradient of a sequence loss through LayerNorm, dense, LayerNorm, GRU and a linear head with the
whole network inside the time scan (jaxseq's replay) and with only the GRU inside it, the
layers before and after applied to all steps at once (JaxMARL's ``ScannedRNN``); the same
function, so a candidate that does not change the numbers.

The configuration is issue 19's (JaxMARL's MAPPO-RNN SMAX baseline's settings): 128 envs x 128
steps, 4 epochs x 4 minibatches, GRU 128 after one dense layer, FuPS, lr 2e-3 linear anneal,
grad-norm 0.25, entropy 0, whole-rollout sequences. Appends the tables, with device, command,
date and load average, to ``benchmarks/results/profile_iteration.md``.

    python benchmarks/profile_iteration.py
    python benchmarks/profile_iteration.py --algos mappo --candidates
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxseq import update
from jaxseq.configure import make_config
from jaxseq.train import make_train

from harness import header, load_average, median_seconds, publish

#: (label, overrides) of MAPPO's whole iteration under --candidates; the first is the reference.
CANDIDATES = (
    ("as configured", {}),
    ("shared_optimizer=one", {"shared_optimizer": "one"}),
    ("value_norm=false", {"value_norm": False}),
    ("layer_norm=false", {"layer_norm": False}),
    ("death_mask=false", {"death_mask": False}),
)
PHASES = (
    "rollout",
    "critic forward",
    "estimators",
    "actor update",
    "actor update, SGD step",
    "critic fit",
    "critic fit, SGD step",
    "learn",
    "iteration",
)


def issue_config(env: str, num_envs: int, rollout_length: int, updates: int = 1, **overrides):
    """Issue 19's jaxseq configuration (JaxMARL's MAPPO-RNN SMAX settings) with ``updates``
    updates in one chunk (and in the run, the horizon of the linear learning-rate schedule)."""
    settings = dict(
        algo="mappo",
        sharing="fups",
        num_envs=num_envs,
        rollout_length=rollout_length,
        epochs=4,
        num_minibatches=4,
        network="gru",
        hidden_size=128,
        num_layers=1,
        sequence_length=rollout_length,
        actor_lr=2e-3,
        critic_lr=2e-3,
        lr_schedule="linear",
        max_grad_norm=0.25,
        ent_coef=0.0,
        eval_every=0,
        updates_per_chunk=updates,
        total_steps=num_envs * rollout_length * updates,
    )
    return make_config(env=env, **{**settings, **overrides})


def _sgd(lr: float = 1e-3) -> optax.GradientTransformation:
    """A plain SGD step that passes any optimiser state through unchanged: in place of Adam (and
    its clip) it keeps the gradient computation and drops the optimiser's work."""
    return optax.GradientTransformation(
        init=lambda params: optax.EmptyState(),
        update=lambda grads, state, params=None: (jax.tree.map(lambda g: -lr * g, grads), state),
    )


@dataclasses.dataclass(frozen=True)
class _SGDActorOptimizer:
    """Stands in for :class:`jaxseq.update.AgentOptimizer` with :func:`_sgd` (every agent moves)."""

    def step(self, members):
        return update.plain_step(_sgd())


def _one_seed(trainer, key):
    return jax.tree.map(lambda x: x[0], trainer.init(key))


def profile(algo: str, cfg_kwargs: dict, repeats: int) -> tuple[dict, np.ndarray]:
    """Seconds of every phase of :data:`PHASES` for ``algo``; and the batch's actions (to check that
    every algorithm was timed on the same batch)."""
    trainer = make_train(issue_config(algo=algo, **cfg_kwargs))
    ts = _one_seed(trainer, jax.random.PRNGKey(0))
    ts, batch, _ = jax.jit(trainer.rollout)(ts)
    key = jax.random.PRNGKey(1)

    def engine(s):
        return trainer.with_values(trainer.learning_values(s)).engine

    def estimators(s, b):
        eng = engine(s)
        est = eng.returns_inputs(b, s.value_norm)
        return eng.estimate(est, jnp.zeros(est["values"].shape[:2] + (1,)))

    def actor(s, b, k, sgd=False):
        eng = engine(s)
        if sgd:
            eng = dataclasses.replace(eng, actor_optimizer=_SGDActorOptimizer())
        est = eng.returns_inputs(b, s.value_norm)
        s, targets, _ = eng.algorithm.scheme.run(eng, s, eng.training_data(b), est, k)
        return s.actor_params, targets

    def critic(s, b, targets, k, sgd=False):
        eng = engine(s)
        if sgd:
            eng = dataclasses.replace(eng, critic_tx=_sgd())
        values = eng.returns_inputs(b, s.value_norm)["values"]
        return eng.fit_critic(s, eng.training_data(b), values, targets, k)[0].critic_params

    def critic_forward(s, b):
        eng = engine(s)
        n = eng.num_agents
        return eng.replay(
            eng.critic, s.critic_params, jnp.arange(n), b.critic_carry[0], eng.critic_input(b.obs), b.start
        )

    _, targets = jax.jit(estimators)(ts, batch)
    programs = {
        "rollout": (jax.jit(trainer.rollout), (ts,)),
        "critic forward": (jax.jit(critic_forward), (ts, batch)),
        "estimators": (jax.jit(estimators), (ts, batch)),
        "actor update": (jax.jit(actor), (ts, batch, key)),
        "actor update, SGD step": (jax.jit(lambda s, b, k: actor(s, b, k, sgd=True)), (ts, batch, key)),
        "critic fit": (jax.jit(critic), (ts, batch, targets, key)),
        "critic fit, SGD step": (
            jax.jit(lambda s, b, t, k: critic(s, b, t, k, sgd=True)),
            (ts, batch, targets, key),
        ),
        "learn": (jax.jit(trainer.learn), (ts, batch)),
        "iteration": (jax.jit(trainer.update), (ts,)),
    }
    times = {name: median_seconds(lambda f=f, a=a: f(*a), repeats) for name, (f, a) in programs.items()}
    return times, np.asarray(batch.actions)


def iteration_time(cfg_kwargs: dict, repeats: int, **overrides) -> float:
    trainer = make_train(issue_config(**{**cfg_kwargs, **overrides}))
    ts = _one_seed(trainer, jax.random.PRNGKey(0))
    step = jax.jit(trainer.update)
    return median_seconds(lambda: step(ts), repeats)


def replay_layouts(steps: int, sequences: int, in_dim: int, hidden: int, repeats: int) -> dict[str, float]:
    """Seconds of one gradient of a sequence loss, [steps, sequences, in_dim] inputs, with the
    whole network per step inside the scan ("per step") and with the GRU alone inside it ("GRU only")."""
    import flax.linen as nn

    class Pre(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.LayerNorm()(nn.relu(nn.Dense(hidden)(nn.LayerNorm()(x))))

    pre, cell, head = Pre(), nn.GRUCell(hidden), nn.Dense(1)
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(k[0], (steps, sequences, in_dim))
    start = jax.random.bernoulli(k[1], 0.02, (steps, sequences))
    carry0 = jnp.zeros((sequences, hidden))
    params = {
        "pre": pre.init(k[2], x[0]),
        "cell": cell.init(k[3], carry0, jnp.zeros((sequences, hidden))),
        "head": head.init(k[3], carry0),
    }

    def gru(p, c, h, s):
        c = jnp.where(s[:, None], 0.0, c)
        return cell.apply(p["cell"], c, h)

    def per_step(p):
        def step(c, xs):
            x_t, s_t = xs
            c, h = gru(p, c, pre.apply(p["pre"], x_t), s_t)
            return c, head.apply(p["head"], h)

        return jnp.mean(jax.lax.scan(step, carry0, (x, start))[1] ** 2)

    def gru_only(p):
        hs = jax.lax.scan(lambda c, xs: gru(p, c, *xs), carry0, (pre.apply(p["pre"], x), start))[1]
        return jnp.mean(head.apply(p["head"], hs) ** 2)

    grads = {"per step": jax.jit(jax.grad(per_step)), "GRU only": jax.jit(jax.grad(gru_only))}
    a, b = (np.asarray(jax.tree.leaves(g(params))[0]) for g in grads.values())
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)  # the same function
    return {name: median_seconds(lambda g=g: g(params), repeats) for name, g in grads.items()}


def phase_table(times: dict[str, dict], steps: int) -> list[str]:
    algos = list(times)
    lines = [
        "| phase | " + " | ".join(f"{a} ms | {a} share" for a in algos) + " |",
        "|---" * (1 + 2 * len(algos)) + "|",
    ]
    for phase in PHASES:
        cells = []
        for a in algos:
            t, whole = times[a][phase], times[a]["iteration"]
            cells.append(f"{1e3 * t:,.1f} | {t / whole:.2f}")
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    for a in algos:
        t = times[a]
        parts = t["rollout"] + t["estimators"] + t["actor update"] + t["critic fit"]
        lines.append(
            f"\n{a}: iteration {steps / t['iteration']:,.0f} env steps/s; rollout + estimators + actor + critic "
            f"timed apart = {parts / t['iteration']:.2f} x the iteration; optimiser share (Adam - SGD step): "
            f"actor {(t['actor update'] - t['actor update, SGD step']) / t['iteration']:.2f}, "
            f"critic {(t['critic fit'] - t['critic fit, SGD step']) / t['iteration']:.2f} of the iteration"
        )
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="smax:2s3z?max_steps=101", help="JaxMARL's map; 101 = its episode length")
    parser.add_argument("--algos", nargs="+", default=["mappo", "a2po", "happo"])
    parser.add_argument("--num-envs", type=int, default=128)
    parser.add_argument("--rollout-length", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidates", action="store_true", help="also MAPPO's iteration with single switches changed")
    parser.add_argument("--layout", action="store_true", help="also the GRU replay layouts (one minibatch's shapes)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    cfg_kwargs = dict(
        env=args.env, num_envs=args.num_envs, rollout_length=args.rollout_length, hidden_size=args.hidden_size
    )
    load_before = load_average()
    times, actions = {}, None
    for algo in args.algos:
        times[algo], acts = profile(algo, cfg_kwargs, args.repeats)
        if actions is not None and not np.array_equal(acts, actions):
            raise SystemExit(f"{algo}'s batch differs from {args.algos[0]}'s")
        actions = acts
    steps = args.num_envs * args.rollout_length
    head = header(
        "profile_iteration.py",
        argv,
        f"{args.env}, FuPS GRU {args.hidden_size}, {args.num_envs} envs x {args.rollout_length} steps, "
        f"4 epochs x 4 minibatches, one seed; median of {args.repeats} calls per phase on the same batch; "
        f"load average {load_before} before, {load_average()} after the phases",
    )
    lines = ["### phases of one iteration (ms, share of the iteration)", ""] + phase_table(times, steps)
    if args.candidates:
        lines += ["", "### MAPPO iteration with one switch changed", ""]
        lines += ["| variant | ms | / as configured |", "|---|---|---|"]
        ref = None
        for label, overrides in CANDIDATES:
            t = iteration_time(cfg_kwargs, args.repeats, **overrides)
            ref = ref or t
            lines.append(f"| {label} | {1e3 * t:,.1f} | {t / ref:.2f} |")
        lines.append(f"\nload average after the variants: {load_average()}")
    if args.layout:
        trainer = make_train(issue_config(**cfg_kwargs))
        spec, n = trainer.engine.spec, trainer.engine.num_agents
        sequences = args.num_envs // 4 * n  # one of the 4 minibatches, every agent's sequence
        shape = f"{args.rollout_length} steps x {sequences} sequences"
        lines += ["", f"### one gradient through the GRU replay ({shape})", ""]
        lines += ["| network input | per step ms | GRU only ms | GRU only / per step |", "|---|---|---|---|"]
        for label, dim in (("actor", spec.obs_dim), ("critic", trainer.engine.critic_in_dim)):
            t = replay_layouts(args.rollout_length, sequences, dim + n, args.hidden_size, args.repeats)
            lines.append(
                f"| {label} ({dim + n}) | {1e3 * t['per step']:,.1f} | {1e3 * t['GRU only']:,.1f} | "
                f"{t['GRU only'] / t['per step']:.2f} |"
            )
        lines.append(f"\nload average after the layouts: {load_average()}")
    publish(head + "\n".join(lines) + "\n\n", "profile_iteration.md", not args.no_save)


if __name__ == "__main__":
    main()

"""Tiny configurations that compile and run in seconds on a CPU, and the traced one-update runs
that the conformance and golden tests share (cached per process; across xdist workers the
persistent compilation cache shares the programs)."""

import functools
import itertools

import jax
import numpy as np
import pytest

from jaxseq.config import Config
from jaxseq.configure import make_config
from jaxseq.train import make_train


def tiny(**overrides):
    base = dict(
        env="mpe:spread",
        algo="mappo",
        num_envs=4,
        rollout_length=8,
        sequence_length=4,
        epochs=2,
        num_minibatches=2,
        hidden_size=16,
        num_layers=1,
        updates_per_chunk=2,
        total_steps=4 * 8 * 2 * 4,
        eval_every=2,
        eval_envs=4,
        eval_episodes=4,
        absolute_factor=0,
        checkpoint_every=1,
        num_seeds=2,
    )
    base.update(overrides)
    return make_config(**base)


def run_chunks(trainer, state, k: int):
    """(state, [metrics of each chunk, on the host]) after ``k`` compiled chunks from ``state``."""
    out = []
    for _ in range(k):
        state, m = trainer.chunk(state)
        out.append(jax.device_get(m))
    return state, out


def tiny_net(**overrides):
    """A small multi-agent network (``jaxseq.nets.make_network``): 3 agents under FuPS, one hidden
    layer of 8, an MLP with layer norm and orthogonal init, 3 outputs; ``overrides`` change any
    keyword."""
    from jaxseq import nets

    base = dict(
        out_dim=3,
        out_gain=0.01,
        sharing="fups",
        num_agents=3,
        hidden=8,
        num_layers=1,
        recurrent=False,
        layer_norm=True,
        orthogonal=True,
        activation="relu",
    )
    return nets.make_network(**{**base, **overrides})


def cli_args(config) -> list[str]:
    """``jaxseq train`` arguments that build ``config`` (every field that differs from the default)."""
    defaults = Config()
    argv = ["--no-progress"]
    for name in config.__dataclass_fields__:
        value = getattr(config, name)
        if value != getattr(defaults, name):
            argv += ["--set", f"{name}={value}"]
    return argv


SEQUENTIAL = ("happo", "happo_preopc", "a2po", "opspo")
SHARING = ("nops", "fups", "paps")
LOOP_ORDERS = ("agents-outer", "epochs-outer")
# Spread over the cases so that each meets both loop orders and every sharing mode: continuous
# actions (5 dims), GRU, agent blocks (4 agents in 2 blocks of 2) and unequal blocks (5 agents in
# blocks of 3 and 2, the second padded with an empty slot).
EXTRAS = (
    {},
    {"env": "mpe:spread?actions=continuous"},
    {"network": "gru"},
    {"env": "mpe:spread?n=4", "agent_blocks": 2},
    {"env": "mpe:spread?n=5", "agent_blocks": 2},
)
# epochs 4 over 3 units: Alg. 2 makes 2 passes, so the second pass is checked too; a large
# learning rate moves every policy well past float noise.
BASE = dict(
    num_seeds=1,
    num_envs=2,
    rollout_length=8,
    sequence_length=4,
    epochs=4,
    num_minibatches=1,
    hidden_size=8,
    actor_lr=3e-2,
)
#: FP3O's (sharing, extra) cases, and the simultaneous and RPISA ones (algo, sharing, extra).
FP3O_CASES = (("nops", {}), ("fups", {"network": "gru"}), ("paps", {"env": "mpe:spread?actions=continuous"}))
OTHER_CASES = (
    ("mappo", "fups", {}),
    ("ippo", "nops", {"network": "gru"}),
    ("coppo", "paps", {"env": "mpe:spread?actions=continuous"}),
    ("mappo_vtrace", "fups", {"env": "mpe:spread?n=4"}),
    ("rpisa", "nops", {}),
)


#: SMAX with dead agents: A2PO's SMAX preset's loop (Alg. 2 under FuPS); with random actions against
#: the heuristic enemy, allies die from step 12-15 on (seeds 0-2), so 16 steps hold dead agents
#: (whose only available action is no-op: log-prob 0, ratio 1) beside live ones.
SMAX_CASE = ("a2po", "fups", "epochs-outer", {"env": "smax:3m", "rollout_length": 16})


def sequential_cases():
    """(algo, sharing, loop_order, extra) for every sequential algorithm x sharing x loop order,
    the extras spread over them: the g-th (algo, sharing) pair takes extra g under agents-outer and
    g + 1 under epochs-outer (modulo their number), so every extra meets both orders; then
    :data:`SMAX_CASE`."""
    grid = itertools.product(SEQUENTIAL, SHARING, LOOP_ORDERS)
    return [
        (algo, sharing, order, EXTRAS[(i // len(LOOP_ORDERS) + LOOP_ORDERS.index(order)) % len(EXTRAS)])
        for i, (algo, sharing, order) in enumerate(grid)
    ] + [SMAX_CASE]


def slow_case(label: str) -> bool:
    """Whether the traced case ``label`` runs (golden and conformance both) in CI's slow step rather
    than the README's command, for its time budget: HAPPO's and HAPPO w/ PreOPC's epochs-outer
    cases (HARL defines HAPPO for agents-outer; A2PO and OPSPO keep both orders in the default
    suite, and every case still runs in CI)."""
    return label.startswith(("happo-", "happo_preopc-")) and "-epochs-outer" in label


def traced_params(labels, values=None) -> list:
    """pytest params of the traced cases ``labels`` (values: the parameters of each, else the label),
    marked slow where :func:`slow_case` says."""
    values = values or [(label,) for label in labels]
    return [
        pytest.param(*v, id=label, marks=pytest.mark.slow if slow_case(label) else ())
        for label, v in zip(labels, values)
    ]


def case_label(*parts: str, extra: dict) -> str:
    """A traced case's label (its test id in the golden and conformance tests, which
    tests/conftest.py uses to run both on one worker)."""
    return "-".join([*parts] + [f"{k}={v}" for k, v in extra.items()])


def update_configs():
    """label -> config of every traced one-update case: the sequential grid, FP3O's and the others'."""
    cases = {}
    for algo, sharing, order, extra in sequential_cases():
        cases[case_label(algo, sharing, order, extra=extra)] = tiny(
            **{**BASE, "algo": algo, "sharing": sharing, "loop_order": order, **extra}
        )
    for algo, sharing, extra in [("fp3o", s, e) for s, e in FP3O_CASES] + list(OTHER_CASES):
        cases[case_label(algo, sharing, extra=extra)] = tiny(**{**BASE, "algo": algo, "sharing": sharing, **extra})
    return cases


@functools.lru_cache(maxsize=None)
def behaviour_batch(cfg):
    """One seed's rollout under the initial policy of ``cfg`` (shared by the algorithms that differ
    only in their update: their initial networks are the same)."""
    trainer = make_train(cfg)
    ts = jax.tree.map(lambda x: x[0], trainer.init(jax.random.PRNGKey(1)))
    return jax.device_get(ts.actor_params), jax.device_get(jax.jit(trainer.rollout)(ts)[1])


def swept_fields(cfg) -> list[str]:
    """The sweepable fields ``cfg``'s update reads: the learning rates, the clip, the discount, the
    estimator's lambda, the entropy coefficient of its action kind, and its algorithm's own."""
    from jaxseq.algorithms import ALGORITHMS
    from jaxseq.sweep import SWEEPABLE

    read = ["actor_lr", "critic_lr", "clip_eps", "gamma", "gae_lambda"]
    read += ["ent_coef_continuous"] if "continuous" in cfg.env else ["ent_coef"]
    return read + [f for f in ALGORITHMS[cfg.algo].fields if f in SWEEPABLE]


def swept(cfg):
    """``cfg`` with every field of :func:`swept_fields` moved to another constant (half, or 0.05
    for a zero) and swept back to its own value, one grid point: the same update as ``cfg``'s, with
    each of those fields a traced value (``TrainState.hyper``) in place of its constant. A traced
    value the program ignored would leave the other constant's result."""
    read = swept_fields(cfg)
    elsewhere = {f: getattr(cfg, f) * 0.5 if getattr(cfg, f) else 0.05 for f in read}
    return cfg.replace(**elsewhere, sweep={f: (getattr(cfg, f),) for f in read})


def _behaviour_config(cfg):
    """``cfg`` as A2PO, the fields only its own algorithm reads at their defaults: the rollout is the
    same for every algorithm, so the algorithms of one configuration share one behaviour batch."""
    from jaxseq.algorithms import ALGORITHMS
    from jaxseq.config import Config

    alg, defaults = ALGORITHMS[cfg.algo], Config()
    own = {f: getattr(defaults, f) for f in (*alg.fields, *alg.scheme_of.fields)}
    return cfg.replace(**own, algo="a2po")


def _update_on_behaviour_batch(trainer, cfg):
    """One update of ``trainer``'s first seed (drawn from key 1) on the behaviour batch of ``cfg``'s
    initial policy: (state before, batch, state after, metrics)."""
    ts = jax.tree.map(lambda x: x[0], trainer.init(jax.random.PRNGKey(1)))
    behaviour_params, batch = behaviour_batch(_behaviour_config(cfg))
    for a, b in zip(jax.tree.leaves(behaviour_params), jax.tree.leaves(ts.actor_params)):
        np.testing.assert_array_equal(a, b)  # the batch was collected by this very policy
    new, metrics = jax.jit(trainer.learn)(ts, batch)
    return ts, batch, new, jax.device_get(metrics)


@functools.lru_cache(maxsize=None)
def traced_update(cfg):
    """One traced update of one seed on A2PO's behaviour batch of the same config, run as
    :func:`swept` (so the golden values also pin the sweeps' traced values in every scheme):
    (trainer, batch, metrics, final actor params, final critic params)."""
    trainer = make_train(swept(cfg), trace_units=True)
    ts, batch, new, metrics = _update_on_behaviour_batch(trainer, cfg)
    assert set(ts.hyper) == set(swept_fields(cfg))
    return trainer, batch, metrics, jax.device_get(new.actor_params), jax.device_get(new.critic_params)


@functools.lru_cache(maxsize=None)
def one_update(cfg):
    """One update of ``cfg``'s first seed on the behaviour batch of its initial policy, compiled
    without the rollout (the tests that compare one algorithm's update with another's share the
    batch): (actor params before, metrics, actor params after)."""
    ts, _, new, metrics = _update_on_behaviour_batch(make_train(cfg), cfg)
    return jax.device_get(ts.actor_params), metrics, jax.device_get(new.actor_params)

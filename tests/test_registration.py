"""An algorithm registered from outside the package (docs/adding-an-algorithm.md's worked example:
HAPPO with its factor clipped) trains through the same engine, and differs from its parent only
where its declaration does: the surrogate's factor."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import objectives
from jaxseq.algorithms import ALGORITHMS, Algorithm, Objective, register
from jaxseq.cli import main
from jaxseq.train import make_train

from support.helpers import tiny


def clipped_factor(bound: float):
    """HAPPO's surrogate with its factor M = exp(log_rho) clipped to [exp(-bound), exp(bound)]."""

    def objective(log_ratio, unit, clip_eps, config):
        log_factor = jnp.clip(unit["log_rho"], -bound, bound)
        return objectives.happo_objective(log_ratio, log_factor, unit["advantages"], clip_eps, unit["mask"])

    return Objective(objective, reads=("log_rho",))


@pytest.fixture(scope="module", autouse=True)
def registered():
    """Registered for this module's tests only (other modules loop over every algorithm)."""
    names = {"happo_tight_factor": 1e-3, "happo_loose_factor": 1e9}
    for name, bound in names.items():
        register(
            dataclasses.replace(
                ALGORITHMS["happo"],
                name=name,
                objective=clipped_factor(bound),
                description=f"HAPPO with its factor clipped to exp(+/-{bound:g})",
            )
        )
    yield
    for name in names:
        ALGORITHMS.pop(name)


# NoPS, so each agent's parameters are its own; a learning rate that moves every policy.
BASE = dict(
    num_seeds=1, num_envs=2, rollout_length=8, sequence_length=4, epochs=3, hidden_size=8, actor_lr=3e-2, sharing="nops"
)


def test_registered_algorithm_is_listed_and_validated():
    assert "happo_tight_factor" in ALGORITHMS
    make_train(tiny(algo="happo_tight_factor", **BASE))  # validates; unknown names are refused
    with pytest.raises(ValueError, match="objective='ppp'"):
        register(Algorithm("broken", "a typo", objective="ppp"))
    with pytest.raises(ValueError, match="registered already"):
        register(ALGORITHMS["happo"])


@pytest.mark.parametrize(
    "objective, scheme, missing",
    [
        ("fp3o", "sequential", "log_mid"),  # FP3O's middle ratios come from FP3O's scheme only
        ("a2po", "simultaneous", "log_rho"),  # no preceding ratio without a sequence of units
        ("opspo", "fp3o", "log_rho', 'state_weights"),
        (Objective(lambda *a: 0.0, reads=("state_weights",)), "rpisa", "state_weights"),
    ],
)
def test_register_refuses_an_objective_whose_inputs_the_scheme_does_not_provide(objective, scheme, missing):
    """Before, ``objective="fp3o"`` with ``scheme="sequential"`` registered and failed at trace
    time with ``KeyError: 'log_mid'``."""
    with pytest.raises(ValueError, match=rf"reads \['{missing}'\], which scheme='{scheme}' does not provide"):
        register(Algorithm("mismatched", "an objective its scheme cannot feed", scheme=scheme, objective=objective))
    assert "mismatched" not in ALGORITHMS
    with pytest.raises(ValueError, match="unit inputs of"):
        register(Algorithm("typo", "a misspelt input", objective=Objective(lambda *a: 0.0, reads=("log_rhoo",))))


def test_cli_lists_a_registered_algorithm(capsys):
    assert main(["algos"]) == 0
    assert "happo_tight_factor" in capsys.readouterr().out


@functools.lru_cache(maxsize=None)
def _updates(algo, count=3):
    """``count`` training updates (rollout + learn) of one seed from key 4: after each, (actor
    params, critic params, metrics without the trace, the first pass's agent order)."""
    trainer = make_train(tiny(algo=algo, **BASE), trace_units=True)
    ts = jax.tree.map(lambda x: x[0], trainer.init(jax.random.PRNGKey(4)))
    update, out = jax.jit(trainer.update), []
    for _ in range(count):
        ts, metrics = update(ts)
        order = metrics.pop("trace")["agents"][0, :, 0]
        out.append(jax.device_get((ts.actor_params, ts.critic_params, metrics, order)))
    return out


def test_a_tight_factor_clip_changes_only_the_agents_after_the_first():
    """The first update, on the same batch, in the same order: the first agent's factor is 1
    (unclipped either way), so it and the critic (GAE targets, fitted after the actors) are
    bit-identical; the later agents, whose factor the clip bounds, are not."""
    (actor_a, critic_a, _, order_a), (actor_b, critic_b, m_b, order_b) = (
        _updates(algo)[0] for algo in ("happo", "happo_tight_factor")
    )
    assert np.isfinite(m_b["loss_actor"])
    np.testing.assert_array_equal(order_a, order_b)
    for a, b in zip(jax.tree.leaves(critic_a), jax.tree.leaves(critic_b)):
        np.testing.assert_array_equal(a, b)
    first, later = order_a[0], order_a[1:]
    leaves = list(zip(jax.tree.leaves(actor_a), jax.tree.leaves(actor_b)))  # NoPS: [N, ...] each
    for a, b in leaves:
        np.testing.assert_array_equal(a[first], b[first])
    for i in later:
        assert max(float(np.abs(a[i] - b[i]).max()) for a, b in leaves) > 1e-6, f"agent {i} did not change"


def test_a_factor_clip_that_never_binds_trains_exactly_as_its_parent():
    """Three updates on mpe:spread: metrics and parameters equal HAPPO's bit for bit."""
    for (p_a, c_a, m_a, _), (p_b, c_b, m_b, _) in zip(_updates("happo"), _updates("happo_loose_factor")):
        for k in m_a:
            np.testing.assert_array_equal(m_a[k], m_b[k], err_msg=k)
        for a, b in zip(jax.tree.leaves((p_a, c_a)), jax.tree.leaves((p_b, c_b))):
            np.testing.assert_array_equal(a, b)

"""OPSPO's state weights (``jaxseq.state_weights``): which implementation each configuration gets,
and the two that need no learning against a NumPy loop of the paper's formula (OPSPO paper App.
B.2). The learned omega-nets are checked unit by unit in ``test_conformance.py`` and the density
ratio they come from in ``test_density.py``."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.algorithms import ALGORITHMS
from jaxseq.configure import make_config
from jaxseq.state_weights import LearnedStateWeights, NoStateWeights, WeightedISStateWeights
from jaxseq.train import make_train

from support.helpers import tiny


@pytest.mark.parametrize(
    "algo, overrides, method",
    [
        ("opspo", dict(sharing="nops"), "bch"),  # learned omega-nets without sharing (OPSPO Alg. 1-2)
        ("opspo", dict(sharing="fups"), "wis"),  # step-wise weighted IS under sharing (App. B.2)
        ("opspo", dict(sharing="paps"), "wis"),
        ("opspo", dict(sharing="nops", opspo_sdc_method="wis"), "wis"),
        ("opspo", dict(sharing="fups", opspo_sdc=False), "none"),  # the SDC ablation
        ("a2po", dict(sharing="nops"), "none"),
        ("happo", dict(sharing="fups"), "none"),
    ],
)
def test_each_configuration_resolves_to_its_state_weights(algo, overrides, method):
    config = make_config(algo=algo, **overrides)
    assert ALGORITHMS[algo].resolve(config).state_weights == method


def test_the_trainer_builds_the_resolved_implementation():
    kinds = {
        "nops": LearnedStateWeights,
        "fups": WeightedISStateWeights,
    }
    for sharing, kind in kinds.items():
        assert type(make_train(tiny(algo="opspo", sharing=sharing)).engine.state_weights) is kind
    assert type(make_train(tiny(algo="a2po")).engine.state_weights) is NoStateWeights


def _numpy_weights(log_rho, starts):
    """min(omega, 1) per agent column: omega_b(t) the product of the episode's ratios before t,
    divided by its mean over the B envs at t (OPSPO paper App. B.2, scaled to mean 1)."""
    T, B, K = log_rho.shape
    out = np.empty_like(log_rho)
    for k in range(K):
        w = np.ones((T, B))
        for b in range(B):
            for t in range(T):
                w[t, b] = 1.0 if starts[t, b] or t == 0 else w[t - 1, b] * np.exp(log_rho[t - 1, b, k])
        out[..., k] = np.minimum(w / w.mean(axis=1, keepdims=True), 1.0)
    return out


def test_weighted_is_weights_each_unit_agent_by_its_own_preceding_ratio():
    rng = np.random.default_rng(3)
    T, B, K = 7, 5, 3
    log_rho = rng.normal(0.0, 0.3, (T, B, K))
    starts = rng.random((T, B)) < 0.25
    starts[0] = True
    weights, nets, info = WeightedISStateWeights().unit(
        {}, (), jnp.asarray(log_rho), jnp.asarray(starts), None, None, None, None
    )
    np.testing.assert_allclose(np.asarray(weights), _numpy_weights(log_rho, starts), rtol=1e-5, atol=1e-6)
    assert nets == () and info == {}
    assert float(weights.min()) < 0.9  # the correction weights some states down: the check can tell


def test_no_state_weights_are_ones_of_one_column():
    log_rho = jnp.full((4, 3, 2), 0.7)
    weights, _, _ = NoStateWeights().unit({}, (), log_rho, jnp.zeros((4, 3), bool), None, None, None, None)
    assert weights.shape == (4, 3, 1) and bool(jnp.all(weights == 1.0))

"""The actor optimiser moves exactly the unit's agents; the fitting loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxseq import update

from support.helpers import tiny_net


def _net(sharing):
    return tiny_net(sharing=sharing, orthogonal=False)


@pytest.mark.parametrize("sharing, per_agent_shared", [("fups", True), ("fups", False), ("paps", True), ("nops", True)])
def test_agent_optimizer_moves_members_only_and_keeps_the_others_state(sharing, per_agent_shared):
    net = _net(sharing)
    params = net.init(jax.random.PRNGKey(0), 5)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    opt = update.AgentOptimizer(tx, net.param_axes, 3, per_agent_shared)
    state = opt.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    step = jax.jit(opt.step(jnp.array([False, True, False])))
    for _ in range(2):  # twice: the second step has non-zero momentum for everyone who moved
        new_params, new_state = step(params, state, grads)
        for ax, p_old, p_new in (
            (net.param_axes["params"][k], params["params"][k], new_params["params"][k]) for k in ("trunk", "head")
        ):
            for a, b in zip(jax.tree.leaves(p_old), jax.tree.leaves(p_new)):
                if ax == 0:  # stacked: agent 1 moved, agents 0 and 2 bit-for-bit the same
                    a, b = np.asarray(a), np.asarray(b)
                    np.testing.assert_array_equal(a[[0, 2]], b[[0, 2]])
                    assert not np.allclose(a[1], b[1])
                else:  # shared: moved by the member's update
                    assert not np.allclose(a, b)
        params, state = new_params, new_state
    counts = [x.tolist() for x in jax.tree.leaves(state) if x.dtype == jnp.int32]
    # each agent's own Adam step count; a single state for shared weights counts every step
    assert counts == ([[0, 2, 0]] * 2 if per_agent_shared else [2, [0, 2, 0]])  # leaves: shared, stacked


def test_per_agent_states_on_shared_weights_equal_one_optimizer_when_everyone_moves():
    net = _net("fups")
    params = net.init(jax.random.PRNGKey(0), 5)
    tx = optax.adam(1e-2)
    results = []
    for per_agent in (True, False):
        opt = update.AgentOptimizer(tx, net.param_axes, 3, per_agent)
        p, s = params, opt.init(params)
        for k in range(3):
            grads = jax.tree.map(lambda x: jax.random.normal(jax.random.PRNGKey(k), x.shape), params)
            p, s = opt.step(jnp.ones(3, bool))(p, s, grads)
        results.append(p)
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_agent_view_and_apply_agents_agree_with_apply():
    net = _net("nops")
    params = net.init(jax.random.PRNGKey(1), 5)
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 3, 5))
    carry, start = net.init_carry((4,)), jnp.zeros((4, 3), bool)
    _, out_all = net.apply(params, carry, x, start)
    agents = jnp.array([2, 0])
    _, out_some = net.apply_agents(params, agents, carry[:, agents], x[:, agents], start[:, agents])
    np.testing.assert_allclose(out_some, out_all[:, agents], rtol=1e-6)

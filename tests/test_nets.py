"""Networks: GRU resets at episode starts, sharing modes agree, masked categorical."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import nets

N, D, A = 3, 5, 4


def _net(sharing, recurrent=True, out_dim=A):
    return nets.make_network(
        out_dim=out_dim,
        out_gain=0.01,
        sharing=sharing,
        num_agents=N,
        hidden=8,
        num_layers=1,
        recurrent=recurrent,
        layer_norm=True,
        orthogonal=True,
        activation="relu",
    )


def test_gru_state_is_reset_exactly_at_episode_starts():
    net = _net("fups")
    params = net.init(jax.random.PRNGKey(0), D)
    xs = jax.random.normal(jax.random.PRNGKey(1), (6, 2, N, D))  # [T, B, N, D]
    starts = jnp.array([[1, 1], [0, 0], [0, 1], [0, 0], [1, 0], [0, 0]], bool)

    def run(xs, starts):
        def step(c, inp):
            x, s = inp
            c, out = net.apply(params, c, x, jnp.broadcast_to(s[:, None], (2, N)))
            return c, out

        return jax.lax.scan(step, net.init_carry((2,)), (xs, starts))[1]

    out = run(xs, starts)
    # Env 1 starts a new episode at t=2: its outputs from t=2 on equal a fresh run from t=2.
    fresh = run(xs[2:], jnp.ones_like(starts[2:]).at[1:].set(starts[3:]))
    np.testing.assert_allclose(out[2:, 1], fresh[:, 1], rtol=1e-5, atol=1e-6)
    # ...and without the reset flag the carry would have mattered (the test can fail).
    no_reset = run(xs, starts.at[2, 1].set(False))
    assert not np.allclose(no_reset[2, 1], out[2, 1])
    # Env 0 is reset at t=4 only; at t=3 its history matters, at t=4 it is forgotten.
    fresh0 = run(xs[4:], jnp.ones_like(starts[4:]).at[1:].set(starts[5:]))
    np.testing.assert_allclose(out[4:, 0], fresh0[:, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("recurrent", [False, True])
def test_sharing_modes_agree_when_per_agent_parameters_are_equal(recurrent):
    fups, paps, nops = (_net(m, recurrent) for m in ("fups", "paps", "nops"))
    shared = fups.init(jax.random.PRNGKey(0), D)

    def stack(t):
        return jax.tree.map(lambda a: jnp.broadcast_to(a, (N,) + a.shape), t)

    p_paps = {"params": {"trunk": shared["params"]["trunk"], "head": stack(shared["params"]["head"])}}
    p_nops = {"params": {"trunk": stack(shared["params"]["trunk"]), "head": stack(shared["params"]["head"])}}
    x = jax.random.normal(jax.random.PRNGKey(1), (7, N, D))
    carry = jax.random.normal(jax.random.PRNGKey(2), (7, N, fups.carry_dim))
    start = jnp.zeros((7, N), bool)
    ref = fups.apply(shared, carry, x, start)
    for net, p in ((paps, p_paps), (nops, p_nops)):
        got = net.apply(p, carry, x, start)
        for a, b in zip(ref, got):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_parameter_shapes_follow_the_sharing_mode():
    base = _net("fups").init(jax.random.PRNGKey(0), D)["params"]
    for mode, stacked in (("fups", ()), ("paps", ("head",)), ("nops", ("trunk", "head"))):
        p = _net(mode).init(jax.random.PRNGKey(0), D)["params"]
        for name in ("trunk", "head"):
            want = jax.tree.map(lambda a: ((N,) if name in stacked else ()) + a.shape, base[name])
            assert jax.tree.map(lambda a: a.shape, p[name]) == want, (mode, name)
    # Separate networks are initialised differently per agent.
    p = _net("nops").init(jax.random.PRNGKey(0), D)["params"]["head"]["kernel"]
    assert not np.allclose(p[0], p[1])

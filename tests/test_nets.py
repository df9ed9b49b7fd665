"""Networks: GRU resets at episode starts, sharing modes agree, masked categorical."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import nets

from support.helpers import tiny_net

N, D, A = 3, 5, 4


def _net(sharing, recurrent=True, out_dim=A, post_layers=0):
    return tiny_net(sharing=sharing, num_agents=N, recurrent=recurrent, out_dim=out_dim, post_layers=post_layers)


@pytest.mark.parametrize("sharing", nets.SHARING_MODES)
@pytest.mark.parametrize("recurrent, post_layers", [(False, 0), (True, 0), (True, 1)])
def test_replay_equals_the_network_stepped_over_the_sequence(sharing, recurrent, post_layers):
    """``replay_agents`` (only the GRU inside the time scan) computes what ``apply_agents`` gives
    step by step, for a subset of agents in another order, from a given carry, with resets."""
    net = _net(sharing, recurrent, post_layers=post_layers)
    params = net.init(jax.random.PRNGKey(0), D)
    agents = jnp.array([2, 0])
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    x = jax.random.normal(k[0], (6, 4, 2, D))  # [L, M, K, D]
    start = jax.random.bernoulli(k[1], 0.3, (6, 4, 2))
    carry0 = jax.random.normal(k[2], (4, 2, net.carry_dim))

    def step(c, xs):
        return net.apply_agents(params, agents, c, *xs)

    want = jax.lax.scan(step, carry0, (x, start))[1]
    got = net.replay_agents(params, agents, carry0, x, start)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(want[:, :, 0], want[:, :, 1], atol=1e-3)  # the two agents differ (agent id)
    names = set(params["params"]["trunk"])
    assert ("Dense_1" in names) == (post_layers == 1)  # num_layers=1: Dense_0 before, Dense_1 after the GRU


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


def test_jaxmarl_network_preset_is_dense_gru_dense_without_layer_norm():
    """JaxMARL's MAPPO-RNN network (the like-for-like preset): Dense 128, GRU 128, Dense 128, output."""
    from jaxseq.configure import make_config
    from jaxseq.train import make_train

    trainer = make_train(make_config("jaxmarl-mappo-smax", num_envs=4, rollout_length=8, sequence_length=8))
    ts = trainer.init(jax.random.PRNGKey(0))
    for params in (ts.actor_params, ts.critic_params):
        trunk = params["params"]["trunk"]
        assert set(trunk) == {"Dense_0", "GRUCell_0", "Dense_1"}
        assert trunk["Dense_1"]["kernel"].shape[-2:] == (128, 128)
    assert trainer.config.value_norm is False and trainer.config.huber_delta == 0.0

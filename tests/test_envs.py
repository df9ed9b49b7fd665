"""The env boundary: agent i's obs, action, reward and state rows line up; auto-reset semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.envs import make_env, parse_env_id
from jaxseq.envs.jaxmarl_adapter import stack_agents, unstack_actions
from jaxseq.errors import ConfigError


def test_stack_agents_orders_rows_by_agent_list_and_pads():
    d = {"b": jnp.array([2.0, 2.0]), "a": jnp.array([1.0])}
    out = stack_agents(d, ["a", "b"], width=3)
    np.testing.assert_array_equal(out, [[1, 0, 0], [2, 2, 0]])
    np.testing.assert_array_equal(stack_agents({"a": 1.0, "b": 2.0}, ["b", "a"]), [2.0, 1.0])
    assert {k: int(v) for k, v in unstack_actions(jnp.array([7, 9]), ["x", "y"]).items()} == {"x": 7, "y": 9}


def test_mpe_rows_line_up_with_jaxmarl_dicts():
    env = make_env("mpe:spread?n=4&reward=general")
    adapter = env.env
    raw = adapter._env
    key = jax.random.PRNGKey(3)
    state, obs = adapter.reset(key)
    raw_obs, raw_state = raw.reset(key)
    for i, name in enumerate(adapter.agents):
        np.testing.assert_allclose(obs.obs[i], raw_obs[name])
        np.testing.assert_allclose(obs.state[i, : adapter.spec.obs_dim], raw_obs[name])
    # Global part of every state row: all agents' observations in agent order.
    np.testing.assert_allclose(
        obs.state[2, adapter.spec.obs_dim :], jnp.concatenate([raw_obs[a] for a in adapter.agents])
    )

    # Agent 2 moves right (MPE action 2), everyone else stays: only row 2's velocity changes.
    actions = jnp.array([0, 0, 2, 0])
    state2, tr = adapter.step(jax.random.PRNGKey(4), state, actions)
    vel_x = np.asarray(tr.next_obs.obs[:, 0])
    assert vel_x[2] > 0 and np.all(vel_x[[0, 1, 3]] == 0)
    # Rewards (agent-specific in the general-sum setting) in the same order as JaxMARL's dict.
    _, _, raw_rew, _, _ = raw.step_env(jax.random.PRNGKey(4), raw_state, unstack_actions(actions, adapter.agents))
    np.testing.assert_allclose(tr.reward, [raw_rew[a] for a in adapter.agents], rtol=1e-6)


def test_mpe_shared_reward_is_equal_across_agents_and_general_is_not_forced():
    env = make_env("mpe:spread")
    s, _ = env.reset(jax.random.PRNGKey(0))
    _, out = env.step(jax.random.PRNGKey(1), s, jnp.zeros(3, jnp.int32))
    assert np.allclose(out.reward, out.reward[0])


def test_smax_rows_line_up_with_jaxmarl_dicts():
    env = make_env("smax:3m")
    adapter = env.env
    key = jax.random.PRNGKey(0)
    state, obs = adapter.reset(key)
    raw_obs, raw_state = adapter._env.reset(key)
    avail = adapter._env.get_avail_actions(raw_state)
    for i, name in enumerate(adapter.agents):
        np.testing.assert_allclose(obs.obs[i], raw_obs[name])
        np.testing.assert_array_equal(obs.avail[i], np.asarray(avail[name], bool))
        np.testing.assert_allclose(obs.state[i, adapter.spec.obs_dim :], raw_obs["world_state"])
    np.testing.assert_array_equal(obs.alive, raw_state.state.unit_alive[:3])


def test_heterogeneous_agents_are_padded_with_masks():
    env = make_env("mpe:speaker_listener")
    spec = env.spec
    assert spec.heterogeneous and spec.obs_widths == (3, 11) and spec.action_counts == (3, 5)
    _, obs = env.reset(jax.random.PRNGKey(0))
    assert obs.obs.shape == (2, 11)
    np.testing.assert_array_equal(obs.obs[0, 3:], 0.0)
    np.testing.assert_array_equal(obs.avail, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])


def test_time_limit_is_truncation_and_keeps_the_final_observation():
    env = make_env("mpe:spread?max_steps=3")
    state, obs = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    rewards = []
    for t in range(10):
        state, out = step(jax.random.PRNGKey(t + 1), state, jnp.full((3,), 2, jnp.int32))
        rewards.append(float(out.reward.mean()))
        if bool(out.done):
            break
    assert bool(out.truncated) and not bool(out.terminated)
    # The true final observation carries the accumulated velocity; the reset one starts at rest.
    assert np.all(np.asarray(out.final_obs.obs[:, 0]) > 0)
    np.testing.assert_array_equal(out.obs.obs[:, :2], 0.0)
    assert int(out.episode_length) == len(rewards) == 3
    np.testing.assert_allclose(float(out.episode_return), sum(rewards), rtol=1e-5)
    assert int(state.episode_length) == 0 and float(state.episode_return) == 0.0


def test_smax_wipe_out_is_termination_and_win():
    env = make_env("smax:3m")
    state, _ = env.reset(jax.random.PRNGKey(0))
    inner = state.inner
    alive = inner.state.unit_alive.at[3:].set(False)
    health = inner.state.unit_health.at[3:].set(0.0)
    state = state.replace(inner=inner.replace(state=inner.state.replace(unit_alive=alive, unit_health=health)))
    _, out = env.step(jax.random.PRNGKey(1), state, jnp.zeros(3, jnp.int32))
    assert bool(out.terminated) and not bool(out.truncated) and bool(out.won) and bool(out.done)


@pytest.mark.parametrize(
    "bad, field_words",
    [
        ("spread", "form family:name"),
        ("gym:cartpole", "unknown family"),
        ("smax:4m", "unknown smax task"),
        ("mpe:spread?k=2", "bad parameter"),
        ("mpe:spread?n=two", "must be int"),
        ("mpe:spread?reward=mixed", "must be one of"),
        ("mpe:spread?n=0", "must be positive"),
        ("mpe:reference?n=3", "takes only max_steps"),
        ("mpe:reference?actions=continuous", "takes only max_steps"),
    ],
)
def test_bad_env_ids_fail_with_a_clear_message(bad, field_words):
    with pytest.raises(ConfigError, match=field_words) as err:
        make_env(bad)
    assert str(err.value).startswith("env:")


def test_env_id_parameters_parse_with_defaults():
    assert parse_env_id("mpe:spread")[2] == {"n": 3, "reward": "shared", "actions": "discrete", "max_steps": 25}
    assert parse_env_id("mpe:spread?n=5")[2]["n"] == 5


def test_continuous_spread_clips_forces_and_moves_along_their_difference():
    env = make_env("mpe:spread?actions=continuous")
    assert env.spec.continuous and env.spec.num_actions == 5 and env.spec.action_counts == (5, 5, 5)
    state, obs = env.reset(jax.random.PRNGKey(0))
    assert bool(obs.avail.all())
    # Forces (none, -x, +x, -y, +y), clipped to [0, 1]: agent 0 pushes +x, agent 1 -y, agent 2 nothing.
    actions = jnp.array([[0.0, -3.0, 5.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.4, 0.4, 0.2, 0.2]])
    _, out = env.step(jax.random.PRNGKey(1), state, actions)
    vel = out.obs.obs[:, :2]  # each agent's own velocity
    assert float(vel[0, 0]) > 0 and float(vel[0, 1]) == 0.0
    assert float(vel[1, 1]) < 0 and float(vel[1, 0]) == 0.0
    np.testing.assert_allclose(vel[2], 0.0)
    np.testing.assert_allclose(vel[0, 0], -vel[1, 1], rtol=1e-6)  # force 1 after clipping either way

"""The subprocess bridge: host environments stepped from compiled programs through worker processes."""

import importlib.util
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.envs import make_env
from jaxseq.envs.bridge import BridgeEnv, BridgeWarning

from support.host_standins import COUNTING_SPEC, episode_length

MAX_STEPS = 5  # below the longest stand-in episode (6), so both terminations and truncations occur


#: Every test runs on both kinds of worker; Ray's (an optional extra, and seconds to start) are slow.
POOLS = [
    "local",
    pytest.param(
        "ray",
        marks=[
            pytest.mark.slow,
            pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (the ray extra)"),
        ],
    ),
]


def counting_env(tmp_path, pool, fail=None, timeout=60.0, workers=2):
    factory = ("support.host_standins", "CountingEnv", {"fail": fail, "flag": str(tmp_path / "failed-once")})
    return BridgeEnv(
        "standin:counting", COUNTING_SPEC, factory, max_steps=MAX_STEPS, workers=workers, timeout=timeout, pool=pool
    )


def rollout(env, seeds=2, envs=3, steps=20):
    """A compiled rollout over [seeds, envs] (nested vmap) with random actions. Returns numpy
    arrays with time first: obs acted on, actions, and the Step fields."""
    step_all = jax.vmap(jax.vmap(env.step))

    def body(carry, key):
        state, obs = carry
        k_act, k_env = jax.random.split(key)
        actions = jax.random.randint(k_act, (seeds, envs, env.spec.num_agents), 0, env.spec.num_actions)
        state, out = step_all(jax.random.split(k_env, seeds * envs).reshape(seeds, envs, -1), state, actions)
        return (state, out.obs), (obs.obs, actions, out)

    @jax.jit
    def run(key):
        k_reset, k_steps = jax.random.split(key)
        state, obs = jax.vmap(jax.vmap(env.reset))(jax.random.split(k_reset, seeds * envs).reshape(seeds, envs, -1))
        (state, _), traj = jax.lax.scan(body, (state, obs), jax.random.split(k_steps, steps))
        return state, traj

    state, (obs, actions, out) = run(jax.random.PRNGKey(0))
    flat = lambda x: np.asarray(x).reshape((steps, seeds * envs) + np.shape(x)[3:])  # noqa: E731
    return np.asarray(state.inner.handle).reshape(-1, 2), flat(obs), flat(actions), jax.tree.map(flat, out)


def lost_transitions(obs, actions, out):
    """Check every transition against the stand-in's rules and return the (step, env) pairs of
    lost ones (a truncation with zero reward whose final observation is the one acted on)."""
    lost = []
    steps, envs = actions.shape[:2]
    for t in range(steps):
        for e in range(envs):
            o, final, nxt = obs[t, e, 0], out.final_obs.obs[t, e, 0], out.obs.obs[t, e, 0]
            term, trunc, reward = out.terminated[t, e], out.truncated[t, e], out.reward[t, e]
            assert out.episode_length[t, e] == o[0] + 1  # one transition per step: none dropped, none repeated
            if trunc and np.array_equal(final, o) and np.all(reward == 0):
                lost.append((t, e))
                assert not term
            else:
                assert np.array_equal(final, [o[0] + 1, o[1]])
                np.testing.assert_allclose(reward, 1 + actions[t, e].sum())
                assert term == (final[0] == episode_length(final[1]))
                assert trunc == (not term and final[0] == MAX_STEPS)
            if term or trunc:
                assert nxt[0] == 0  # a fresh episode
            else:
                np.testing.assert_array_equal(nxt, final)
            if t + 1 < steps:
                np.testing.assert_array_equal(obs[t + 1, e, 0], nxt)
    return lost


@pytest.mark.parametrize("pool", POOLS)
def test_bridge_keeps_auto_reset_semantics_under_nested_vmap(tmp_path, pool):
    env = counting_env(tmp_path, pool)
    try:
        handles, obs, actions, out = rollout(env)
        assert lost_transitions(obs, actions, out) == []
        assert out.terminated.any() and out.truncated.any()
        # One host instance per env and seed, spread over both workers.
        assert len(set(handles[:, 1])) == 6 and {env.pool.worker_of(i) for i in handles[:, 1]} == {0, 1}
        # The host logs every ended episode with the env's metrics.
        ended = int(out.done.sum())
        assert len(env.pool.episodes) == ended
        assert sorted(e["steps_seen"] for e in env.pool.episodes) == sorted(
            out.final_obs.obs[out.done][:, 0, 0].tolist()
        )
    finally:
        env.close()


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("fail", ["crash", "exception", "hang"])
def test_a_failed_worker_is_reported_restarted_and_its_episodes_truncated(tmp_path, pool, fail):
    env = counting_env(tmp_path, pool, fail=fail, timeout=3.0)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            handles, obs, actions, out = rollout(env)
        assert [w.category for w in caught if issubclass(w.category, BridgeWarning)] == [BridgeWarning]
        (event,) = env.pool.events
        assert event.env_id == "standin:counting" and event.kind == fail
        # The run loop's hook: each failure once, as a record for metrics.jsonl and episodes.jsonl.
        (record,) = env.take_failures()
        assert record["kind"] == fail and record["worker"] == event.worker and env.take_failures() == []
        assert {
            "crash": {"local": "exit status -9", "ray": "The actor died unexpectedly"}[pool],
            "exception": "RuntimeError: scripted failure",
            "hang": "no reply within 3 s",
        }[fail] in event.detail
        lost = lost_transitions(obs, actions, out)
        # Exactly the failed worker's instances lose their episode, once, at the same step; the
        # run goes on in every env.
        assert len({t for t, _ in lost}) == 1
        failed = {e for _, e in lost}
        assert failed == {e for e in range(6) if env.pool.worker_of(handles[e, 1]) == event.worker}
        assert set(event.instances) == {int(handles[e, 1]) for e in failed}
        assert int(lost[0][0]) < obs.shape[0] - 1
    finally:
        env.close()


@pytest.mark.parametrize("pool", POOLS)
def test_a_handle_from_another_process_starts_a_fresh_truncated_episode(tmp_path, pool):
    env = counting_env(tmp_path, pool, workers=1)
    try:
        state, obs = jax.jit(env.reset)(jax.random.PRNGKey(0))
        state, _ = jax.jit(env.step)(jax.random.PRNGKey(1), state, jnp.zeros((2,), jnp.int32))
        foreign = state.replace(inner=state.inner.replace(handle=state.inner.handle.at[0].add(1)))
        _, out = jax.jit(env.step)(jax.random.PRNGKey(2), foreign, jnp.zeros((2,), jnp.int32))
        assert bool(out.truncated) and not bool(out.terminated) and float(out.reward.sum()) == 0.0
        np.testing.assert_array_equal(out.final_obs.obs, state.inner.obs.obs)  # the last observation returned
        assert float(out.obs.obs[0, 0]) == 0.0
    finally:
        env.close()


@pytest.mark.parametrize("pool", POOLS[1:])
def test_pz_simple_spread_on_ray_matches_the_local_pool_transition_for_transition(pool):
    """Same seeds, same actions: every field of every transition equal, auto-resets included (30
    steps of 25-step episodes, 2 seeds x 3 envs on 2 workers)."""
    runs = {}
    for kind in ("local", pool):
        env = make_env(f"pz:simple_spread?workers=2&pool={kind}")
        try:
            _, obs, actions, out = rollout(env, steps=30)
            runs[kind] = (obs, actions, out)
        finally:
            env.close()
    assert runs["local"][2].truncated.sum() == 6  # each env's episode ended once
    jax.tree.map(np.testing.assert_array_equal, runs["local"], runs[pool])

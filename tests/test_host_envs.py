"""Host environments through the bridge: PettingZoo MPE, StarCraft II (scripted stand-in), GRF."""

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.envs import make_env, parse_env_id
from jaxseq.envs.bridge import BridgeEnv, WorkerPool
from jaxseq.errors import ConfigError
from jaxseq.hostenv import football, pettingzoo_mpe, starcraft

from support.helpers import tiny

HAS_GFOOTBALL = importlib.util.find_spec("gfootball") is not None


def test_pz_simple_spread_through_the_pool_matches_pettingzoo():
    from mpe2 import simple_spread_v3

    factory = (pettingzoo_mpe.__name__, "SimpleSpread", {"n": 3, "local_ratio": 0.0, "max_steps": 25})
    pool = WorkerPool("pz:simple_spread", factory, max_steps=25, workers=1, timeout=60)
    raw = simple_spread_v3.parallel_env(N=3, local_ratio=0.0, max_cycles=25, continuous_actions=False)
    agents = raw.possible_agents

    def expected(obs_dict):
        rows = np.stack([obs_dict[a] for a in agents])
        return rows, np.concatenate([rows, np.tile(rows.reshape(1, -1), (3, 1))], axis=1)

    try:
        handles, obs = pool.reset(0, np.asarray([7], np.uint32))
        rows, state = expected(raw.reset(seed=7)[0])
        np.testing.assert_allclose(obs.obs[0], rows, rtol=1e-6)
        np.testing.assert_allclose(obs.state[0], state, rtol=1e-6)
        rng = np.random.default_rng(0)
        for t in range(1, 27):
            actions = rng.integers(0, 5, (1, 3))
            seed = np.asarray([100 + t], np.uint32)
            handles, out = pool.step(handles, seed, actions)
            nxt, rewards, _, truncs, _ = raw.step({a: int(actions[0, i]) for i, a in enumerate(agents)})
            np.testing.assert_allclose(out["final"].obs[0], expected(nxt)[0], rtol=1e-6)
            np.testing.assert_allclose(out["reward"][0], [rewards[a] for a in agents], rtol=1e-6)
            assert bool(out["truncated"][0]) == (t == 25) and not out["terminated"][0] and not out["lost"][0]
            if t == 25:  # auto-reset with this step's seed
                np.testing.assert_allclose(out["obs"].obs[0], expected(raw.reset(seed=100 + t)[0])[0], rtol=1e-6)
    finally:
        pool.close()


@pytest.mark.parametrize(
    "env_id, overrides",
    [
        ("pz:simple_spread?workers=2", {}),
        pytest.param(
            "pz:simple_spread?workers=2&pool=ray",
            {},
            marks=[
                pytest.mark.skipif(
                    importlib.util.find_spec("ray") is None, reason="Ray is not installed (the ray extra)"
                ),
                pytest.mark.slow,  # Ray starts in seconds; tests/test_bridge.py checks the Ray pool in detail
            ],
        ),
        # 1 seed x 2 games (and 2 evaluation games) on the 2 workers.
        pytest.param(
            "grf:5_vs_5?max_steps=25",
            dict(num_seeds=1, num_envs=2, eval_envs=2, total_steps=128),
            marks=[
                pytest.mark.skipif(not HAS_GFOOTBALL, reason="gfootball missing: experiments/install_gfootball.sh"),
                pytest.mark.slow,  # 21 s; the bridge's own tests and pz: keep the path in the default suite
            ],
        ),
    ],
)
def test_training_through_the_bridge_writes_a_run_folder(tmp_path, env_id, overrides):
    from jaxseq.run import train_run

    config = tiny(env=env_id, **overrides)
    # Interrupted after 2 of 4 chunks and resumed: the host games restart (each env's first
    # transition after the restore is a truncation) and the run completes.
    run_dir = train_run(config, out=tmp_path, progress=False, max_chunks=2)
    train_run(resume=run_dir, progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["chunk"] for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss_actor"]) and np.isfinite(r["loss_critic"]) for r in rows)
    low, high = (-200, 0) if env_id.startswith("pz") else (-5, 5)
    assert all(v is not None and low < v < high for v in rows[-1]["return_per_seed"])  # both seeds ended episodes
    assert all(v is not None and low < v < high for v in rows[-1]["test_return_per_seed"])
    episodes = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    # 64 steps per env: every env ends an episode of 25 steps before the interruption (at step 32)
    # and one after it (the restored game restarts at step 33).
    train = [e for e in episodes if e["phase"] == "train"]
    assert len(train) == 2 * config.num_seeds * config.num_envs and {e["length"] for e in train} == {25.0}
    assert all(f"episode_{name}" in rows[-1] for name in make_env(env_id).host_spec.episode_metrics)
    assert all(r["worker_failures"] == 0 for r in rows) and not [e for e in episodes if e["phase"] == "worker_failure"]


def test_smac_adapter_against_a_scripted_stand_in():
    host_spec, limit = starcraft.spec("3m", module="support.smac_standin")
    assert (host_spec.num_agents, host_spec.obs_dim, host_spec.state_dim, host_spec.num_actions, limit) == (
        3,
        5,
        12,
        9,
        8,
    )
    env = BridgeEnv(
        "sc2:3m",
        host_spec,
        (starcraft.__name__, "StarCraft", {"map_name": "3m", "module": "support.smac_standin"}),
        max_steps=limit,
        workers=2,
        timeout=60,
    )
    envs, steps = 4, 40

    def body(carry, key):
        state, obs = carry
        k_act, k_env = jax.random.split(key)
        # Random available actions; envs 0 and 2 favour attacks (they win), envs 1 and 3 avoid them.
        logits = jnp.where(jnp.arange(9) >= 6, jnp.asarray([3.0, -3.0, 3.0, -3.0])[:, None, None], 0.0)
        actions = jax.random.categorical(k_act, jnp.where(obs.avail, logits, -jnp.inf))
        state, out = jax.vmap(env.step)(jax.random.split(k_env, envs), state, actions)
        return (state, out.obs), (obs, out)

    @jax.jit
    def run(key):
        state, obs = jax.vmap(env.reset)(jax.random.split(key, envs))
        return jax.lax.scan(body, (state, obs), jax.random.split(key, steps))[1]

    try:
        obs, out = jax.device_get(run(jax.random.PRNGKey(0)))
        assert env.pool.events == []  # the stand-in raises on unavailable actions: none was sent
        np.testing.assert_array_equal(obs.alive, ~obs.avail[..., 0])
        dead_rows = obs.avail[~obs.alive]
        assert dead_rows.shape[0] > 0 and (dead_rows[:, 0].all() and not dead_rows[:, 1:].any())
        np.testing.assert_array_equal(obs.state[..., :5], obs.obs)
        np.testing.assert_array_equal(out.terminated, out.won)  # the stand-in ends early only by winning
        np.testing.assert_array_equal(out.truncated, (out.episode_length == limit) & ~out.won)
        assert out.won.any() and out.truncated.any()
        assert {e["battle_won"] for e in env.take_episodes()} == {0.0, 1.0}
    finally:
        env.close()


def test_host_ids_fail_clearly_before_anything_starts(monkeypatch):
    with pytest.raises(ConfigError, match="workers >= 1"):
        parse_env_id("pz:simple_spread?workers=0")
    with pytest.raises(ConfigError, match=r"pool in .* must be one of \[.local., .ray.\]"):
        parse_env_id("pz:simple_spread?pool=slurm")
    with pytest.raises(ConfigError, match="unknown grf task"):
        parse_env_id("grf:6_vs_6")
    real = importlib.util.find_spec
    missing = ("gfootball", "ray")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    with pytest.raises(ConfigError, match="install_gfootball.sh"):
        make_env("grf:5_vs_5")
    with pytest.raises(ConfigError, match=r"pool=ray .* needs Ray.*pip install -e '\.\[ray\]'"):
        make_env("pz:simple_spread?pool=ray")
    if importlib.util.find_spec("smac") is None:
        with pytest.raises(ConfigError, match="StarCraft II and SMAC"):
            make_env("sc2:3m")


def test_checkpoint_zones_follow_the_distance_thresholds():
    assert football.checkpoint_zones(0.0, 0.0) == 0  # distance 1 from the goal
    assert football.checkpoint_zones(0.2, 0.0) == 3  # 0.8 <= 0.99 - 0.8 k / 9 for k = 0, 1, 2
    assert football.checkpoint_zones(1.0, 0.0) == 10


def _raw(team, player, score=(0, 0)):
    return {"ball_owned_team": team, "ball_owned_player": player, "score": list(score)}


def test_behaviour_tracker_counts_passes_losses_and_assists():
    t = football.BehaviourTracker()
    t.update(_raw(0, 1), {}, 0, 0)  # player 1 wins the ball
    t.update(_raw(-1, -1), {1: 11}, 0, 0)  # short pass in flight
    t.update(_raw(0, 2), {}, 0, 0)  # received by player 2: a pass
    t.update(_raw(-1, -1), {2: 12}, 1, 0)  # player 2 shoots and scores: an assist for the pass
    t.update(_raw(0, 3), {}, 0, 0)
    t.update(_raw(-1, -1), {3: 9}, 0, 0)  # long pass ...
    t.update(_raw(1, 4), {}, 0, 0)  # ... intercepted: a failed attempt and a lost ball
    t.update(_raw(0, 2), {}, 0, 1)  # won back; a goal conceded
    t.update(_raw(0, 3), {}, 0, 0)  # a teammate takes it without a pass action: no pass
    r = t.result()
    assert (r["goals"], r["goals_conceded"], r["assists"], r["passes"], r["pass_attempts"], r["lost_balls"]) == (
        1,
        1,
        1,
        1,
        2,
        1,
    )
    assert r["pass_rate"] == 0.5


@pytest.mark.skipif(not HAS_GFOOTBALL, reason="gfootball missing (bash experiments/install_gfootball.sh)")
def test_grf_5_vs_5_steps_through_the_bridge():
    env = make_env("grf:5_vs_5?max_steps=30")
    assert (env.spec.num_agents, env.spec.obs_dim, env.spec.num_actions) == (4, 115, 19)
    step = jax.jit(jax.vmap(env.step))
    try:
        state, obs = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 2))
        for t in range(1, 31):
            actions = jax.random.randint(jax.random.PRNGKey(t), (2, 4), 0, 19)
            state, out = step(jax.random.split(jax.random.PRNGKey(100 + t), 2), state, actions)
        assert bool(out.truncated.all()) and not bool(out.terminated.any()) and np.isfinite(out.reward).all()
        records = env.take_episodes()
        assert len(records) == 2 and set(football.METRICS) <= set(records[0])
        assert {env.pool.worker_of(int(i)) for i in state.inner.handle[:, 1]} == {0, 1}  # both workers hold a game
    finally:
        env.close()

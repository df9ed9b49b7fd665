"""Multi-agent MuJoCo: the partitions and observations cross-checked against gymnasium-robotics'
``mamujoco_v1`` (test-only dependency), every task under jit and vmap, and the env-id errors."""

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from jaxseq import policies
from jaxseq.algorithms import ALGORITHMS
from jaxseq.configure import make_config
from jaxseq.envs import Observation, make_env, parse_env_id
from jaxseq.envs.mamujoco import features
from jaxseq.envs.mamujoco_robots import ROBOTS, task_names
from jaxseq.errors import ConfigError
from jaxseq.train import make_train

from support.helpers import tiny

mamujoco_v1 = pytest.importorskip("gymnasium_robotics.envs.multiagent_mujoco.mujoco_multi")

#: The partitions mamujoco_v1 defines too (the others are ours: docs/design.md).
SHARED = [
    ("HalfCheetah", "2x3"),
    ("HalfCheetah", "6x1"),
    ("Ant", "2x4"),
    ("Ant", "2x4d"),
    ("Ant", "4x2"),
    ("Hopper", "3x1"),
    ("Walker2d", "2x3"),
    ("Humanoid", "9|8"),
    ("HumanoidStandup", "9|8"),
    ("Reacher", "2x1"),
]
#: mamujoco_v1's Humanoid nodes abdomen_y and abdomen_z read each other's qpos / qvel (their
#: indices -17 / -16 are abdomen_z / abdomen_y in the model) while acting on their own actuators;
#: we observe the joint we actuate, so we swap the names on their side (docs/design.md).
_SWAPPED = {"abdomen_y": "abdomen_z", "abdomen_z": "abdomen_y"}


def _names(m, kind, count):
    return [mujoco.mj_id2name(m, kind, i) for i in range(count)]


def _reference(robot, partition):
    env = mamujoco_v1.MultiAgentMujocoEnv(robot, partition, agent_obsk=1)
    return env, env.single_agent_env.unwrapped


def _reference_labels(env, model, structure):
    """Decode mamujoco_v1's observation factorization (indices into the single-agent observation)
    into (category, joint or body, component) labels, like our Layout.labels."""
    joints = _names(model, mujoco.mjtObj.mjOBJ_JOINT, model.njnt)
    bodies = _names(model, mujoco.mjtObj.mjOBJ_BODY, model.nbody)
    carried = {int(model.jnt_bodyid[j]): joints[j] for j in range(model.njnt)}
    body_label = [name if name else f"@{carried[b]}" for b, name in enumerate(bodies)]

    def joint_of(address, adr):
        j = max(j for j in range(model.njnt) if adr[j] <= address)
        return joints[j], address - int(adr[j])

    flat = [("qpos", *joint_of(i, model.jnt_qposadr)) for i in range(structure["skipped_qpos"], model.nq)]
    flat += [("qvel", *joint_of(i, model.jnt_dofadr)) for i in range(model.nv)]
    for cat, width in (("cinert", 10), ("cvel", 6), ("qfrc_actuator", 1), ("cfrc_ext", 6)):
        size = structure.get(cat, 0)
        if cat == "qfrc_actuator":  # the actuated dofs, after the root's six
            flat += [(cat, *joint_of(6 + i, model.jnt_dofadr)) for i in range(size)]
        else:
            flat += [(cat, body_label[1 + i // width], i % width) for i in range(size)]
    return {agent: [flat[i] for i in idx] for agent, idx in env.observation_factorization.items()}


@pytest.mark.parametrize("robot,partition", SHARED, ids=[f"{r}-{p}" for r, p in SHARED])
def test_partition_matches_gymnasium_robotics(robot, partition):
    ours = make_env(f"mamujoco:{robot}-{partition}").env
    lay, m = ours.layout, ours._brax.sys.mj_model
    env, base = _reference(robot, partition)
    assert env.possible_agents == [f"agent_{i}" for i in range(ours.spec.num_agents)]
    # The same joints per agent, in the same action order (matched by name: the models differ).
    ref_joints = _names(base.model, mujoco.mjtObj.mjOBJ_JOINT, base.model.njnt)
    our_joints = _names(m, mujoco.mjtObj.mjOBJ_JOINT, m.njnt)
    for i, part in enumerate(env.agent_action_partitions):
        want = [ref_joints[base.model.actuator_trnid[node.act_ids, 0]] for node in part]
        got = [our_joints[m.actuator_trnid[a, 0]] for a in lay.act_index[i, : lay.action_counts[i]]]
        assert got == want, (i, got, want)
    structure = getattr(base, "observation_structure", None)
    if env.observation_factorization is not None:
        # The same observation components in the same order; bodies that brax's MJX model fuses
        # into their parent (Ant's legs, Humanoid's feet) are absent on our side.
        swap = _SWAPPED if robot.startswith("Humanoid") else {}
        for i, (agent, labels) in enumerate(_reference_labels(env, base.model, structure).items()):
            want = [(c, swap.get(n, n) if c in ("qpos", "qvel", "qfrc_actuator") else n, k) for c, n, k in labels]
            want = [lab for lab in want if lab[0] not in ("cinert", "cvel", "cfrc_ext") or lab[1] in lay.body_ids]
            assert lay.labels[i] == want, agent
    if robot in ("HalfCheetah", "Hopper", "Walker2d", "Reacher"):
        # Observations of kinematic quantities only: equal values for an equal joint state.
        rng = np.random.default_rng(0)
        qpos = base.init_qpos + rng.uniform(-0.3, 0.3, base.model.nq)
        qvel = rng.uniform(-12.0, 12.0, base.model.nv)  # beyond Hopper's clip of 10
        base.set_state(qpos, qvel)
        want = env._get_obs()
        data = mujoco.MjData(m)
        data.qpos[:], data.qvel[:] = qpos, qvel
        mujoco.mj_forward(m, data)
        feats = np.asarray(features(lay, data))
        for i, agent in enumerate(env.possible_agents):
            np.testing.assert_allclose(feats[lay.index[i, : lay.widths[i]]], want[agent], rtol=1e-5, atol=1e-6)


# Every robot's compiled check (23-67 s each on 2 cores) runs with -m slow (CI's slow step), for the
# README command's time budget. The partitions gymnasium-robotics also has (Humanoid 9|8's
# heterogeneous split among them) are cross-checked against it, without jit, in the default suite.
_DEFAULT_ROBOTS = ()


def _robot_tasks():
    """(robot, its partitions): physics compiles once per robot."""
    return [
        pytest.param(robot, sorted(r.partitions), id=robot, marks=() if robot in _DEFAULT_ROBOTS else pytest.mark.slow)
        for robot, r in ROBOTS.items()
    ]


@pytest.mark.parametrize("robot,partitions", _robot_tasks())
def test_every_task_resets_and_steps_under_jit_and_vmap(robot, partitions):
    """Each robot's full env (physics included) under jit + vmap for its first partition; every
    partition's observation and action maps under jit + vmap on the physics states it produced."""
    B = 2
    first = make_env(f"mamujoco:{robot}-{partitions[0]}?max_steps=3")
    spec = first.spec

    def run(keys):
        state, obs = jax.vmap(first.reset)(keys)
        actions = jnp.ones((B, spec.num_agents, spec.num_actions))

        def step(state, key):
            state, out = jax.vmap(first.step)(jax.random.split(key, B), state, actions)
            return state, (state.inner[0], out)

        return obs, jax.lax.scan(step, state, jax.random.split(keys[0], 3))[1]

    obs, (states, outs) = jax.jit(run)(jax.random.split(jax.random.PRNGKey(0), B))
    assert obs.obs.shape == (B, spec.num_agents, spec.obs_dim)
    assert obs.state.shape == (B, spec.num_agents, spec.state_dim)
    assert np.all(np.isfinite(np.asarray(outs.final_obs.obs)))
    # The time limit ends every episode at step 3 (as a truncation unless the robot fell first), never earlier.
    done = np.asarray(outs.done)
    assert np.all(done[-1]) and not np.any(done[0])
    assert not np.any(np.asarray(outs.truncated & outs.terminated))
    second = jax.tree.map(lambda x: x[1], states)  # the physics state after two steps
    inners = [make_env(f"mamujoco:{robot}-{partition}").env for partition in partitions]
    acts = [
        jnp.arange(1, e.spec.num_agents * e.spec.num_actions + 1, dtype=jnp.float32).reshape(e.spec.num_agents, -1)
        / 100.0
        for e in inners
    ]
    # Every partition's maps in one program: observations of the physics states, control vectors.
    observed, ctrls = jax.jit(
        lambda s, a: (
            [jax.vmap(e._observe)(s) for e in inners],
            [jax.vmap(e.global_action)(jnp.stack([x] * B)) for e, x in zip(inners, a)],
        )
    )(second, acts)
    for inner, o, ctrl, acts in zip(inners, observed, ctrls, acts):
        n, width = inner.spec.num_agents, inner.spec.obs_dim
        assert o.obs.shape == (B, n, width) and np.all(np.isfinite(np.asarray(o.obs)))
        for i, w in enumerate(inner.spec.obs_widths):  # padding columns are zero
            assert np.all(np.asarray(o.obs[:, i, w:]) == 0.0)
        # Each actuator is driven by exactly one agent's action dimension.
        ctrl = np.asarray(ctrl)[0]
        lay = inner.layout
        want = np.zeros(len(lay.ctrl_low), np.float32)
        for i in range(n):
            want[lay.act_index[i, : lay.action_counts[i]]] = np.asarray(acts[i, : lay.action_counts[i]])
        np.testing.assert_allclose(ctrl, np.clip(want, lay.ctrl_low, lay.ctrl_high), rtol=1e-6)


def test_env_ids_list_every_task_and_reject_unknown_ones():
    names = task_names()
    for task in ("HalfCheetah-6x1", "Humanoid-9|8", "Ant-8x1", "Walker2d-3x2", "Humanoid-17x1", "Reacher-2x1"):
        assert task in names
    with pytest.raises(ConfigError, match="Hopper-3x1"):
        parse_env_id("mamujoco:Hopper-2x2")
    with pytest.raises(ConfigError, match="unknown mamujoco task 'Dog-4x1'"):
        parse_env_id("mamujoco:Dog-4x1")
    with pytest.raises(ConfigError, match="obsk"):
        parse_env_id("mamujoco:Hopper-3x1?obsk=-1")
    assert parse_env_id("mamujoco:Humanoid-9|8?obsk=2")[2] == {"obsk": 2, "max_steps": 1000}


def test_obsk_widens_the_neighbourhood():
    """k = 0: own joints only; k = 2 on the 6x1 cheetah chain: the joints two links away too."""
    widths = {k: make_env(f"mamujoco:HalfCheetah-6x1?obsk={k}").spec.obs_widths for k in (0, 1, 2)}
    globals_ = 5  # rootz, rooty positions; rootx, rootz, rooty velocities
    assert widths[0] == (2 + globals_,) * 6
    assert widths[1] == tuple(2 + n + globals_ for n in (2, 2, 1, 2, 2, 1))  # bthigh, bshin, bfoot, fthigh, ...
    assert widths[2] == tuple(2 + n + globals_ for n in (4, 3, 2, 4, 3, 2))


def _train_briefly(algo, task):
    """Two updates of ``algo`` on ``task`` (episodes of 8 steps, so some finish); returns the
    actor parameters before and after and the metrics."""
    cfg = tiny(
        env=f"mamujoco:{task}?max_steps=8",
        algo=algo,
        sharing="nops",
        num_envs=2,
        num_seeds=1,
        rollout_length=8,
        num_minibatches=1,
    )
    trainer = make_train(cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    before = jax.device_get(state.actor_params)
    state, metrics = trainer.chunk(state)
    return before, jax.device_get(state.actor_params), jax.device_get(metrics)


@pytest.mark.slow
@pytest.mark.parametrize("algo, task", [("mappo", "Hopper-3x1"), ("a2po", "HalfCheetah-6x1"), ("a2po", "Humanoid-9|8")])
def test_mappo_and_a2po_train_on_mamujoco(algo, task):
    """Slow (MJX compiles per robot, 40-80 s each on 2 cores); its fast twins are the continuous-MPE
    training tests in test_schemes.py (same trainer path with Gaussian actions, every scheme) and the
    jit / vmap test of every robot above (same env code). One algorithm per robot (the simultaneous
    scheme on the smallest, the sequential one on 6 agents and on Humanoid's padded 9|8 split):
    every pair took 410 s of the slow run's time."""
    before, after, metrics = _train_briefly(algo, task)
    for key in ("loss_actor", "loss_critic", "return_mean"):
        assert np.all(np.isfinite(metrics[key])), key
    assert np.all(metrics["episodes"] > 0)
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), before, after)
    assert moved["params"]["head"]["log_std"] > 0 and moved["params"]["head"]["mean"]["kernel"] > 0


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_every_objective_takes_gaussian_log_probs(reduce):
    """Each algorithm's actor loss on Gaussian outputs [T, K, 2A] and continuous actions [T, K, A]:
    finite, and with gradients on every agent's mean and log-std."""
    T, N = 6, 3
    rng = np.random.default_rng(0)
    for algo in sorted(ALGORITHMS):
        trainer = make_train(make_config(env="mamujoco:Hopper-3x1", algo=algo, log_prob_reduce=reduce))
        pol = trainer.policy
        assert isinstance(pol, policies.Gaussian) and pol.reduce == reduce
        A = trainer.env.spec.num_actions
        old = jnp.asarray(
            np.concatenate([rng.uniform(-0.5, 0.5, (T, N, A)), np.full((T, N, A), -0.5)], -1), jnp.float32
        )
        avail = jnp.ones((T, N, A), bool)
        actions = pol.sample(jax.random.PRNGKey(1), old, avail)
        mb = {
            "obs": Observation(
                obs=jnp.zeros((T, N, 1)), state=jnp.zeros((T, N, 1)), avail=avail, alive=jnp.ones((T, N), bool)
            ),
            "actions": actions,
            "log_probs": pol.log_prob(old, avail, actions),
            "advantages": jnp.asarray(rng.normal(size=(T, N)), jnp.float32),
            "mask": jnp.ones((T, N)),
            "log_rho": jnp.asarray(rng.normal(scale=0.1, size=(T, N)), jnp.float32),
            "state_weights": jnp.ones((T, N)),
            "log_mid": jnp.asarray(rng.normal(scale=0.1, size=(T, N)), jnp.float32),
        }
        new = old.at[..., :A].add(0.05)
        loss, _ = trainer.engine.policy_loss(new, mb, 0.2)
        grad = jax.grad(lambda out: trainer.engine.policy_loss(out, mb, 0.2)[0])(new)
        assert np.isfinite(float(loss)), algo
        assert np.all(np.abs(np.asarray(grad)).sum(0) > 0), algo  # every agent's mean and log-std

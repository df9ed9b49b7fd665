"""Multi-agent MuJoCo on the MJX physics backend: a robot's joints split among agents.

A task is a robot and a partition of its actuated joints, ``mamujoco:HalfCheetah-6x1``: agent i
applies the torques of its joints. The physics, rewards, reset noise and health termination are
brax's environment models with ``backend="mjx"`` (MJX-tuned MJCF of the gymnasium robots; brax's
own MaBrax wrapper in JaxMARL is deprecated and not used). This module adds the multi-agent view:

- **partitions** of A2PO paper Fig. 9 / FP3O paper Tab. 1, with gymnasium-robotics' (``mamujoco_v1``)
  joint graph and agent order wherever it defines the partition (the robots' tables:
  :mod:`jaxseq.envs.mamujoco_robots`);
- **local observations** with the obsk neighbourhood: an agent sees categories (``qpos``, ``qvel``,
  body quantities) of its own joints (depth 0) and ``qpos`` of the joints within graph distance
  ``k`` (depth 1..k), then the global items (the torso / root); nodes at each depth are ordered by
  label and each body's items appear once per category, as in ``mamujoco_v1``;
- **global state** for the critic: the agent's local observation (padded) followed by brax's
  single-agent observation of the robot;
- **time limit**: the 1000-step limit is a truncation (bootstrapped), kept apart from brax's
  health termination.

Observations are gathered from one flat feature vector of the MuJoCo data (:func:`features`)
with a static index array [N, O] built from the joint and body *names* of the model (never raw
indices), so the same layout applies to a C ``mujoco.MjData`` of the same model; the cross-check
against gymnasium-robotics in ``tests/test_mamujoco.py`` uses that. Deliberate differences from
``mamujoco_v1`` are listed in docs/design.md ("Multi-agent MuJoCo").
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxseq.envs.base import EnvSpec, MultiAgentEnv, Observation, Transition
from jaxseq.envs.mamujoco_robots import ROBOTS, Robot

#: Per-body widths of the body categories of the MuJoCo data.
_BODY_WIDTH = {"cinert": 10, "cvel": 6, "cfrc_ext": 6}
#: Reacher: the fingertip is a point 0.11 along body1's x axis (gymnasium's reacher.xml body
#: "fingertip", brax's tip); its distance to the target is an observation category.
_FINGERTIP_OFFSET = np.array([0.11, 0.0, 0.0])


# -- the observation layout ------------------------------------------------------------------


def _model_names(m: Any, kind: Any, count: int) -> list[str | None]:
    import mujoco

    return [mujoco.mj_id2name(m, kind, i) for i in range(count)]


class Layout:
    """Where every observation entry of every agent comes from, for one model and partition.

    Built once from the MuJoCo model (``mujoco.MjModel``) by joint and body names. Attributes:
    blocks: category -> (offset, size) in the feature vector of :func:`features`;
    index [N, O] int: feature index of each observation entry (padding -> the final zero entry);
    labels: per agent, (category, joint or body, component) of each entry;
    act_index [N, A] int: actuator of each action dimension (padding -> nu, dropped);
    ctrl_low / ctrl_high [nu]: the actuators' control range;
    body_ids: body label (a name, or ``@joint`` for the body carrying that joint) -> body index.
    """

    def __init__(self, robot: Robot, m: Any, partition: str, obsk: int):
        import mujoco

        self.robot = robot
        joint_names = _model_names(m, mujoco.mjtObj.mjOBJ_JOINT, m.njnt)
        body_names = _model_names(m, mujoco.mjtObj.mjOBJ_BODY, m.nbody)
        self._joint = {name: i for i, name in enumerate(joint_names) if name}
        self.body_ids = {name: i for i, name in enumerate(body_names) if name}
        self.body_ids.update({f"@{joint_names[j]}": int(m.jnt_bodyid[j]) for j in range(m.njnt) if joint_names[j]})
        self._m = m
        cats = {c for depth in robot.local_categories for c in depth} | {c for c, *_ in robot.global_items}
        sizes = {"qpos": m.nq, "qvel": m.nv}
        if robot.angle_qpos:
            sizes.update(sin=m.nq, cos=m.nq)
        if "qfrc_actuator" in cats:
            sizes["qfrc_actuator"] = m.nv
        sizes.update({c: m.nbody * _BODY_WIDTH[c] for c in _BODY_WIDTH if c in cats})
        if robot.fingertip_labels:
            sizes["fingertip_dist"] = 3
        self.blocks, offset = {}, 0
        for name, size in sizes.items():
            self.blocks[name] = (offset, size)
            offset += size
        self.feature_size = offset + 1  # a final constant 0 for padding
        parts = robot.partitions[partition]
        per_agent = [self._agent_entries(parts[i], obsk) for i in range(len(parts))]
        self.labels = [[label for label, _ in entries] for entries in per_agent]
        self.widths = tuple(len(e) for e in per_agent)
        width = max(self.widths)
        self.index = np.full((len(parts), width), self.feature_size - 1, np.int32)
        for i, entries in enumerate(per_agent):
            self.index[i, : len(entries)] = [idx for _, idx in entries]
        actuator_of = {int(m.actuator_trnid[a, 0]): a for a in range(m.nu)}
        self.action_counts = tuple(len(p) for p in parts)
        self.act_index = np.full((len(parts), max(self.action_counts)), m.nu, np.int32)
        for i, part in enumerate(parts):
            self.act_index[i, : len(part)] = [actuator_of[self._joint[robot.joints[label]]] for label in part]
        self.ctrl_low, self.ctrl_high = np.asarray(m.actuator_ctrlrange, np.float32).T

    @property
    def uses_cfrc_ext(self) -> bool:
        return "cfrc_ext" in self.blocks

    def _depths(self, part: tuple[str, ...], obsk: int) -> list[list[str]]:
        """Labels at graph distance 0..obsk from the agent's joints, each depth sorted by label."""
        seen, frontier, depths = set(part), set(part), [sorted(part)]
        for _ in range(obsk):
            nxt = {other for label in frontier for edge in self.robot.edges if label in edge for other in edge}
            frontier = nxt - seen
            seen |= frontier
            depths.append(sorted(frontier))
        return depths

    def _joint_entries(self, category: str, joint: str, lo: int, hi: int) -> list[tuple[tuple, int]]:
        j = self._joint[joint]
        adr = int(self._m.jnt_qposadr[j]) if category == "qpos" else int(self._m.jnt_dofadr[j])
        off = self.blocks[category][0]
        return [((category, joint, c), off + adr + c) for c in range(lo, hi)]

    def _agent_entries(self, part: tuple[str, ...], obsk: int) -> list[tuple[tuple, int]]:
        robot, entries = self.robot, []
        seen_bodies: dict[str, set] = {}
        depth_cats = robot.local_categories
        for d, labels in enumerate(self._depths(part, obsk)):
            for label in labels:
                joint = robot.joints[label]
                for cat in depth_cats[min(d, len(depth_cats) - 1)]:
                    if cat == "qpos" and robot.angle_qpos:
                        adr = int(self._m.jnt_qposadr[self._joint[joint]])
                        entries += [((fn, joint, 0), self.blocks[fn][0] + adr) for fn in ("sin", "cos")]
                    elif cat in ("qpos", "qvel"):
                        entries += self._joint_entries(cat, joint, 0, 1)
                    elif cat == "qfrc_actuator":
                        dof = int(self._m.jnt_dofadr[self._joint[joint]])
                        entries.append(((cat, joint, 0), self.blocks[cat][0] + dof))
                    elif cat == "fingertip_dist":
                        if label in robot.fingertip_labels:
                            off = self.blocks[cat][0]
                            entries += [((cat, "fingertip", c), off + c) for c in range(3)]
                    else:  # a body category: each body once per category
                        width, off = _BODY_WIDTH[cat], self.blocks[cat][0]
                        for body in robot.bodies.get(label, ()):
                            if body not in self.body_ids or body in seen_bodies.setdefault(cat, set()):
                                continue  # fused away in the MJX model, or already observed
                            seen_bodies[cat].add(body)
                            b = self.body_ids[body]
                            entries += [((cat, body, c), off + b * width + c) for c in range(width)]
        for cat, joint, lo, hi in robot.global_items:
            entries += self._joint_entries(cat, joint, lo, hi)
        return entries


def features(layout: Layout, data: Any) -> jax.Array:
    """The flat feature vector of MuJoCo data (MJX ``Data`` or C ``MjData`` after ``mj_forward``):
    the blocks of ``layout.blocks`` then one 0, [F]. ``cfrc_ext`` must have been computed
    (``rne_postconstraint``) where the layout uses it."""
    robot, parts = layout.robot, []
    for name in layout.blocks:
        if name == "qvel" and robot.qvel_clip is not None:
            block = jnp.clip(data.qvel, -robot.qvel_clip, robot.qvel_clip)
        elif name in ("sin", "cos"):
            block = getattr(jnp, name)(data.qpos)
        elif name == "fingertip_dist":
            body1, target = layout.body_ids["body1"], layout.body_ids["target"]
            xmat = jnp.reshape(data.xmat[body1], (3, 3))
            block = data.xpos[body1] + xmat @ _FINGERTIP_OFFSET - data.xpos[target]
        elif name in _BODY_WIDTH:
            block = jnp.ravel(getattr(data, name))
            if robot.body_clip is not None:
                block = jnp.clip(block, -robot.body_clip, robot.body_clip)
        else:
            block = getattr(data, name)
        parts.append(jnp.ravel(jnp.asarray(block, jnp.float32)))
    return jnp.concatenate(parts + [jnp.zeros((1,), jnp.float32)])


# -- the environment -------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _physics(brax_name: str) -> tuple[Any, int]:
    """brax's MJX environment of a robot and the width of its single-agent observation (cached:
    every partition of a robot shares them)."""
    import warnings

    with warnings.catch_warnings():  # brax warns that its own envs are unmaintained
        warnings.simplefilter("ignore")
        from brax import envs as brax_envs

        env = brax_envs.get_environment(brax_name, backend="mjx")
    # brax's observation_size runs a reset op by op (about 25 s of tiny compilations); the shape is enough.
    return env, int(jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs.shape[-1])


class MaMuJoCo(MultiAgentEnv):
    """A partitioned robot: actions [N, A] (each agent's joint torques, clipped to the control
    range), the team reward of the robot for every agent, termination from brax's health check,
    truncation at ``max_steps``."""

    def __init__(self, env_id: str, robot: str, partition: str, obsk: int, max_steps: int):
        self._brax, global_dim = _physics(ROBOTS[robot].brax_name)
        self.layout = Layout(ROBOTS[robot], self._brax.sys.mj_model, partition, obsk)
        lay = self.layout
        n, obs_dim = lay.index.shape
        self._index, self._act_index = jnp.asarray(lay.index), jnp.asarray(lay.act_index)
        self._avail = jnp.asarray(lay.act_index < len(lay.ctrl_low))
        self._low, self._high = jnp.asarray(lay.ctrl_low), jnp.asarray(lay.ctrl_high)
        self.max_steps = max_steps
        self.spec = EnvSpec(
            env_id=env_id,
            num_agents=n,
            obs_dim=obs_dim,
            state_dim=obs_dim + global_dim,
            num_actions=lay.act_index.shape[1],
            max_steps=max_steps,
            has_win=False,
            obs_widths=lay.widths,
            action_counts=lay.action_counts,
            continuous=True,
        )

    @property
    def mj_model(self) -> Any:
        """The robot's C MuJoCo model (``mujoco.MjModel``; ``jaxseq render`` draws it)."""
        return self._brax.sys.mj_model

    @property
    def dt(self) -> float:
        """Seconds of simulated time per env step."""
        return float(self._brax.dt)

    @staticmethod
    def qpos(state: Any) -> jax.Array:
        """The joint positions [nq] of an env state (what a frame of the robot shows)."""
        return state[0].pipeline_state.qpos

    def _observe(self, brax_state: Any) -> Observation:
        data = brax_state.pipeline_state
        if self.layout.uses_cfrc_ext:
            from mujoco import mjx

            data = mjx.rne_postconstraint(self._brax.sys, data)
        obs = features(self.layout, data)[self._index]
        n = obs.shape[0]
        state = jnp.concatenate([obs, jnp.broadcast_to(brax_state.obs, (n, brax_state.obs.shape[-1]))], axis=-1)
        return Observation(obs=obs, state=state, avail=self._avail, alive=jnp.ones((n,), bool))

    def global_action(self, actions: jax.Array) -> jax.Array:
        """actions [N, A] -> the robot's control vector [nu], clipped to the control range."""
        ctrl = jnp.zeros_like(self._low).at[self._act_index].set(actions.astype(jnp.float32), mode="drop")
        return jnp.clip(ctrl, self._low, self._high)

    def reset(self, key: jax.Array) -> tuple[Any, Observation]:
        brax_state = self._brax.reset(key)
        return (brax_state, jnp.zeros((), jnp.int32)), self._observe(brax_state)

    def step(self, key: jax.Array, state: Any, actions: jax.Array) -> tuple[Any, Transition]:
        brax_state, t = state
        brax_state = self._brax.step(brax_state, self.global_action(actions))
        t = t + 1
        terminated = brax_state.done > 0
        n = self.spec.num_agents
        tr = Transition(
            next_obs=self._observe(brax_state),
            reward=jnp.broadcast_to(brax_state.reward.astype(jnp.float32), (n,)),
            terminated=terminated,
            truncated=(t >= self.max_steps) & ~terminated,
            won=jnp.zeros((), bool),
        )
        return (brax_state, t), tr

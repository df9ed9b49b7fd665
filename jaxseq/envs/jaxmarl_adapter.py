"""Adapters from JaxMARL's dict-keyed environments to jaxseq's array form.

The one place where JaxMARL's per-agent dicts become arrays is :func:`stack_agents`; everything
downstream indexes agents by position ``i`` in ``env.agents``. ``tests/test_envs.py`` pins that
agent i's observation, action, reward and global-state row line up.

JaxMARL's own ``step`` auto-resets and so loses the final observation of an episode; the adapters
call ``step_env`` (no reset) and leave the reset to :class:`jaxseq.envs.base.AutoReset`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxseq.envs.base import EnvSpec, MultiAgentEnv, Observation, Transition


def stack_agents(values: Mapping[str, jax.Array], agents: Sequence[str], width: int | None = None) -> jax.Array:
    """Stack per-agent entries of a JaxMARL dict into an array with agents on axis 0.

    values: {agent_name: array [D_i] or scalar}; agents: the agent order (row i is agents[i]).
    width: pad the last axis with zeros to this width (heterogeneous agents); None for scalars.
    Returns [N] for scalar entries, else [N, width].
    """
    rows = []
    for name in agents:
        v = jnp.asarray(values[name])
        if width is not None:
            v = v.reshape(-1)
            if v.shape[0] > width:
                raise ValueError(f"agent {name!r} has width {v.shape[0]} > padded width {width}")
            v = jnp.pad(v, (0, width - v.shape[0]))
        rows.append(v)
    return jnp.stack(rows)


def unstack_actions(actions: jax.Array, agents: Sequence[str]) -> dict[str, jax.Array]:
    """The inverse boundary for actions: [N] (or [N, A] continuous) -> {agents[i]: actions[i]}."""
    return {name: actions[i] for i, name in enumerate(agents)}


def _is_box(space: Any) -> bool:
    return hasattr(space, "low") and hasattr(space, "high")


def _action_count(space: Any) -> int:
    """Discrete: the number of actions; continuous (a Box): the number of action dimensions."""
    return int(space.shape[0]) if _is_box(space) else int(space.n)


def _obs_width(space: Any) -> int:
    size = 1
    for d in space.shape:
        size *= int(d)
    return size


class _JaxMARLAdapter(MultiAgentEnv):
    """Shared boundary logic; subclasses say how to read state, alive, termination and wins."""

    def __init__(self, env_id: str, env: Any, max_steps: int, has_win: bool):
        self._env = env
        self.agents = list(env.agents)
        widths = tuple(_obs_width(env.observation_space(a)) for a in self.agents)
        counts = tuple(_action_count(env.action_space(a)) for a in self.agents)
        spaces = [env.action_space(a) for a in self.agents]
        self._continuous = _is_box(spaces[0])
        if self._continuous:  # actions are clipped to the box before JaxMARL sees them

            def bound(sp, x):
                return jnp.pad(jnp.broadcast_to(jnp.asarray(x, jnp.float32), sp.shape), (0, max(counts) - sp.shape[0]))

            self._low = jnp.stack([bound(sp, sp.low) for sp in spaces])
            self._high = jnp.stack([bound(sp, sp.high) for sp in spaces])
        self._obs_dim = max(widths)
        self._num_actions = max(counts)
        self._action_counts = jnp.asarray(counts)
        self.spec = EnvSpec(
            env_id=env_id,
            num_agents=len(self.agents),
            obs_dim=self._obs_dim,
            state_dim=self._obs_dim + self._global_dim(),
            num_actions=self._num_actions,
            max_steps=max_steps,
            has_win=has_win,
            obs_widths=widths,
            action_counts=counts,
            continuous=self._continuous,
        )

    @property
    def jaxmarl_env(self) -> Any:
        """The wrapped JaxMARL environment (its visualisers draw its states; ``jaxseq render``)."""
        return self._env

    # -- per-family hooks -------------------------------------------------------------------
    def _global_dim(self) -> int:
        raise NotImplementedError

    def _global(self, obs_dict: Mapping[str, jax.Array], obs: jax.Array) -> jax.Array:
        """The team-wide part of the state, [G]."""
        raise NotImplementedError

    def _avail(self, state: Any) -> jax.Array:
        """[N, A] bool."""
        raise NotImplementedError

    def _alive(self, state: Any) -> jax.Array:
        return jnp.ones((len(self.agents),), bool)

    def _ends(self, state: Any, dones: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(terminated, truncated, won) for the transition that produced ``state``."""
        raise NotImplementedError

    # -- the interface ---------------------------------------------------------------------
    def _observe(self, obs_dict: Mapping[str, jax.Array], state: Any) -> Observation:
        obs = stack_agents(obs_dict, self.agents, self._obs_dim).astype(jnp.float32)
        glob = self._global(obs_dict, obs).astype(jnp.float32)
        agent_state = jnp.concatenate([obs, jnp.broadcast_to(glob, (obs.shape[0], glob.shape[-1]))], axis=-1)
        return Observation(obs=obs, state=agent_state, avail=self._avail(state), alive=self._alive(state))

    def reset(self, key):
        obs_dict, state = self._env.reset(key)
        return state, self._observe(obs_dict, state)

    def step(self, key, state, actions):
        if self._continuous:
            actions = jnp.clip(actions, self._low, self._high)
        obs_dict, state, rewards, dones, _ = self._env.step_env(key, state, unstack_actions(actions, self.agents))
        terminated, truncated, won = self._ends(state, dones)
        tr = Transition(
            next_obs=self._observe(obs_dict, state),
            reward=stack_agents(rewards, self.agents).astype(jnp.float32),
            terminated=terminated,
            truncated=truncated,
            won=won,
        )
        return state, tr

    def _padded_action_mask(self) -> jax.Array:
        return jnp.arange(self._num_actions)[None, :] < self._action_counts[:, None]


class MPEAdapter(_JaxMARLAdapter):
    """JaxMARL MPE. Episodes only end at the time limit, so every end is a truncation.

    Global state: every agent's (padded) observation, concatenated; agent i's state row is
    ``[obs_i, obs_0, ..., obs_{N-1}]``.
    """

    def _global_dim(self) -> int:
        return self._obs_dim * len(self.agents)

    def _global(self, obs_dict, obs):
        return obs.reshape(-1)

    def _avail(self, state):
        return self._padded_action_mask()

    def _ends(self, state, dones):
        return jnp.zeros((), bool), jnp.asarray(dones["__all__"]), jnp.zeros((), bool)


class SMAXAdapter(_JaxMARLAdapter):
    """JaxMARL SMAX with the heuristic enemy.

    terminated: one team is wiped out; truncated: the step limit without that; won: every enemy
    dead and at least one ally alive (JaxMARL's won-battle condition). Global state: JaxMARL's
    world state, so agent i's row is ``[obs_i, world_state]``.
    """

    def _global_dim(self) -> int:
        obs_dict, _ = jax.eval_shape(self._env.reset, jax.random.PRNGKey(0))
        return int(obs_dict["world_state"].shape[-1])

    def _global(self, obs_dict, obs):
        return obs_dict["world_state"]

    def _avail(self, state):
        return stack_agents(self._env.get_avail_actions(state), self.agents).astype(bool)

    def _alive(self, state):
        return state.state.unit_alive[: len(self.agents)]

    def _ends(self, state, dones):
        alive = state.state.unit_alive
        allies_dead = ~jnp.any(alive[: len(self.agents)])
        enemies_dead = ~jnp.any(alive[len(self.agents) :])
        terminated = allies_dead | enemies_dead
        truncated = jnp.asarray(dones["__all__"]) & ~terminated
        won = enemies_dead & ~allies_dead
        return terminated, truncated, won

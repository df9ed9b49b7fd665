"""The array-form multi-agent environment interface used inside compiled code.

Every environment jaxseq trains on is seen through this interface. Agents are an array axis
(never a dict); ``N`` is the number of agents, ``O`` the (padded) observation width, ``S`` the
(padded) width of the agent-specific global state and ``A`` the (padded) number of actions.

An adapter (``MultiAgentEnv`` subclass) implements one *transition without reset*; the
:class:`AutoReset` wrapper adds auto-reset, keeping the true final observation and state of an
episode in :class:`Step` for bootstrapping, and running episode statistics.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from flax import struct


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Static facts about an environment, known before anything compiles."""

    env_id: str
    num_agents: int
    obs_dim: int
    state_dim: int
    num_actions: int
    max_steps: int
    has_win: bool
    #: Per agent, the true (unpadded) observation width; padding columns are zero.
    obs_widths: tuple[int, ...]
    #: Per agent, the true number of actions; padded actions are never available.
    action_counts: tuple[int, ...]
    #: Continuous actions: A is the (padded) number of action dimensions, ``avail`` marks each
    #: agent's real dimensions and actions are float [N, A] (else int32 [N] indices).
    continuous: bool = False

    @property
    def heterogeneous(self) -> bool:
        return len(set(self.obs_widths)) > 1 or len(set(self.action_counts)) > 1


@struct.dataclass
class Observation:
    """What the agents see at a decision point.

    obs: [N, O] float32, padded with zeros beyond each agent's width.
    state: [N, S] float32, agent-specific global state (centralised critic input).
    avail: [N, A] bool, available actions (padded actions are False).
    alive: [N] bool, the agent can act (False for dead SMAX units; used as the death mask).
    """

    obs: jax.Array
    state: jax.Array
    avail: jax.Array
    alive: jax.Array


@struct.dataclass
class Transition:
    """The outcome of one environment transition, before any reset.

    reward: [N] float32 (equal entries for a shared team reward).
    terminated: [] bool, a true end of the episode: no bootstrapping.
    truncated: [] bool, a time limit: bootstrap from the value of the final observation.
    won: [] bool, the team won (SMAX); False where undefined.
    """

    next_obs: Observation
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    won: jax.Array


class MultiAgentEnv:
    """An adapter: array-form reset and step, no auto-reset."""

    spec: EnvSpec

    def reset(self, key: jax.Array) -> tuple[Any, Observation]:
        raise NotImplementedError

    def step(self, key: jax.Array, state: Any, actions: jax.Array) -> tuple[Any, Transition]:
        """actions: [N] int32 (discrete) or [N, A] float32 (continuous). Returns the next inner state and the
        transition."""
        raise NotImplementedError


class Env(Protocol):
    """What the trainer and the run loop read of an environment: :class:`AutoReset` around a
    :class:`MultiAgentEnv`, or a host environment (:class:`jaxseq.envs.bridge.BridgeEnv`).

    ``reset`` and ``step`` run inside compiled code (vmapped over envs); the rest runs in the
    Python loop between compiled chunks: ``records_episodes`` (the env keeps a record of every
    ended episode, read by ``take_episodes()``), ``episode_metrics`` (the behaviour metrics named
    in those records), ``take_failures()`` (worker failures since the last call) and ``close()``.
    """

    spec: EnvSpec
    records_episodes: bool
    episode_metrics: tuple[str, ...]

    def reset(self, key: jax.Array) -> tuple[Any, Observation]: ...

    def step(self, key: jax.Array, state: Any, actions: jax.Array) -> tuple[Any, Step]: ...

    def take_episodes(self) -> list[dict]: ...

    def take_failures(self) -> list[dict]: ...

    def close(self) -> None: ...


@struct.dataclass
class EnvState:
    inner: Any
    episode_return: jax.Array  # [] running return (mean over agents of the rewards)
    episode_length: jax.Array  # [] int32


@struct.dataclass
class Step:
    """What :meth:`AutoReset.step` returns for one environment.

    obs: the observation to act on next (a fresh episode's first one where the last ended).
    final_obs: the true next observation of this transition (before any reset), for bootstrapping.
    reward, terminated, truncated, won: as in :class:`Transition`.
    done: [] bool, ``terminated | truncated``: the next ``obs`` starts a new episode.
    episode_return, episode_length: statistics of the finished episode, valid where ``done``.
    """

    obs: Observation
    final_obs: Observation
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    done: jax.Array
    won: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class AutoReset:
    """Auto-resetting wrapper that keeps the true final observation of each episode: an
    :class:`Env` whose run-loop hooks are empty (a host environment fills them)."""

    records_episodes: bool = False
    episode_metrics: tuple[str, ...] = ()

    def __init__(self, env: MultiAgentEnv):
        self.env = env
        self.spec = env.spec

    def take_episodes(self) -> list[dict]:
        return []

    def take_failures(self) -> list[dict]:
        return []

    def close(self) -> None:
        pass

    def reset(self, key: jax.Array) -> tuple[EnvState, Observation]:
        inner, obs = self.env.reset(key)
        zero = jnp.zeros((), jnp.float32)
        return EnvState(inner, zero, jnp.zeros((), jnp.int32)), obs

    def step(self, key: jax.Array, state: EnvState, actions: jax.Array) -> tuple[EnvState, Step]:
        step_key, reset_key = jax.random.split(key)
        inner, tr = self.env.step(step_key, state.inner, actions)
        done = tr.terminated | tr.truncated
        reset_inner, reset_obs = self.env.reset(reset_key)
        return record_step(state, _select(done, reset_inner, inner), tr, _select(done, reset_obs, tr.next_obs))


def record_step(state: EnvState, inner: Any, tr: Transition, obs: Observation) -> tuple[EnvState, Step]:
    """The auto-reset bookkeeping shared by every env wrapper: the episode statistics and the
    :class:`Step`. ``inner`` and ``obs`` are the next inner state and observation, already reset
    where the transition ``tr`` ended the episode."""
    done = tr.terminated | tr.truncated
    ep_return = state.episode_return + jnp.mean(tr.reward)
    ep_length = state.episode_length + 1
    new_state = EnvState(
        inner=inner,
        episode_return=jnp.where(done, 0.0, ep_return),
        episode_length=jnp.where(done, 0, ep_length),
    )
    step = Step(
        obs=obs,
        final_obs=tr.next_obs,
        reward=tr.reward,
        terminated=tr.terminated,
        truncated=tr.truncated,
        done=done,
        won=tr.won,
        episode_return=ep_return,
        episode_length=ep_length,
    )
    return new_state, step

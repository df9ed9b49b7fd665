"""A small cooperative multi-agent MDP (``tabular:game``): the game, drawn at random, and its
adapter to the env interface. Its exact values, advantages, state distributions and the exact
expectations of the estimators are :mod:`jaxseq.envs.tabular_exact`.

Notation: ``S`` states, ``N`` agents, ``A`` actions per agent, ``J = A**N`` joint actions.

Joint action index (mixed radix, agent 0 most significant)::

    j = sum_i a_i * A**(N - 1 - i),      e.g. N = 3, A = 3: (a_0, a_1, a_2) = (1, 0, 2) -> 9 + 0 + 2 = 11.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxseq.envs.base import EnvSpec, MultiAgentEnv, Observation, Transition

# --------------------------------------------------------------------------------------------
# The game
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class TabularGame:
    """A cooperative stochastic game with a shared reward.

    P: [S, J, S] float64, P[s, j, s'] = Pr(s' | s, joint action j) (rows sum to 1).
    R: [S, J] float64, the shared reward of joint action j in state s.
    mu0: [S] float64, the initial state distribution.
    gamma: the discount; num_agents N; num_actions A (J = A**N, index as in the module docstring).
    """

    P: np.ndarray
    R: np.ndarray
    mu0: np.ndarray
    gamma: float
    num_agents: int
    num_actions: int

    @property
    def num_states(self) -> int:
        return int(self.R.shape[0])

    @property
    def num_joint(self) -> int:
        return int(self.R.shape[1])


def joint_action_table(num_agents: int, num_actions: int) -> np.ndarray:
    """[J, N] int: row j holds the per-agent actions of joint action j (agent 0 most significant)."""
    j = np.arange(num_actions**num_agents)
    powers = num_actions ** np.arange(num_agents - 1, -1, -1)
    return (j[:, None] // powers[None, :]) % num_actions


def joint_index(actions, num_actions: int):
    """Joint action index of per-agent actions ``[..., N]`` -> ``[...]`` (NumPy or JAX arrays).

    j = sum_i a_i * A**(N - 1 - i), agent 0 most significant.
    """
    n = actions.shape[-1]
    powers = num_actions ** np.arange(n - 1, -1, -1)
    return (actions * powers).sum(-1)


def make_game(
    seed: int,
    num_states: int = 4,
    num_agents: int = 3,
    num_actions: int = 3,
    gamma: float = 0.9,
    bonus: float = 2.0,
    penalty: float = 0.5,
) -> TabularGame:
    """A random cooperative game, drawn deterministically from ``seed``.

    Transitions: P(. | s, j) ~ Dirichlet(0.5, ..., 0.5), independently per (s, j), so states are
    reached at different rates and the joint action matters for where the team goes.
    Reward (a climbing-game pattern per state): each state s has a target joint action x(s), drawn
    uniformly; with m(s, a) = #{i : a_i = x_i(s)} the number of agents playing their part of it,

        R(s, a) = U(s, a) + bonus * [m = N] - penalty * [0 < m < N],   U ~ Uniform(0, 1).

    Full coordination on x(s) pays ``bonus``; partial coordination is penalised, so an agent that
    moves towards its part of x(s) while the others do not (or moves away while they arrive) hurts
    the team, and one agent's greedy change can undo what the preceding agents' changes gained.
    mu0 ~ Dirichlet(1, ..., 1).
    """
    if num_states < 1 or num_agents < 1 or num_actions < 1:
        raise ValueError("num_states, num_agents and num_actions must be positive")
    rng = np.random.default_rng(seed)
    n_joint = num_actions**num_agents
    P = rng.dirichlet(np.full(num_states, 0.5), size=(num_states, n_joint))
    targets = rng.integers(num_actions, size=(num_states, num_agents))  # x(s), [S, N]
    table = joint_action_table(num_agents, num_actions)  # [J, N]
    matches = (table[None, :, :] == targets[:, None, :]).sum(-1)  # m(s, j), [S, J]
    R = rng.uniform(0.0, 1.0, size=(num_states, n_joint))
    R = R + bonus * (matches == num_agents) - penalty * ((matches > 0) & (matches < num_agents))
    mu0 = rng.dirichlet(np.ones(num_states))
    return TabularGame(P=P, R=R, mu0=mu0, gamma=float(gamma), num_agents=num_agents, num_actions=num_actions)


# --------------------------------------------------------------------------------------------
# The environment adapter
# --------------------------------------------------------------------------------------------


@struct.dataclass
class TabularState:
    """s: [] int32 the current state; t: [] int32 transitions taken in this episode."""

    s: jax.Array
    t: jax.Array


class TabularAdapter(MultiAgentEnv):
    """:class:`TabularGame` as a :class:`~jaxseq.envs.base.MultiAgentEnv`.

    Observation of every agent and its state row: the one-hot of the state, [N, S]. All actions
    are available, every agent is alive, the reward is the shared R(s, j) for every agent. There is
    no termination; the episode is truncated after ``max_steps`` transitions, and the trainer
    bootstraps there, so training targets the infinite-horizon discounted value. ``won`` is False.
    """

    def __init__(self, env_id: str, game: TabularGame, max_steps: int):
        self.game = game
        self._P = jnp.asarray(game.P, jnp.float32)
        self._R = jnp.asarray(game.R, jnp.float32)
        self._log_P = jnp.log(jnp.maximum(self._P, 1e-30))
        self._log_mu0 = jnp.log(jnp.maximum(jnp.asarray(game.mu0, jnp.float32), 1e-30))
        self._max_steps = max_steps
        S, N, A = game.num_states, game.num_agents, game.num_actions
        self.spec = EnvSpec(
            env_id=env_id,
            num_agents=N,
            obs_dim=S,
            state_dim=S,
            num_actions=A,
            max_steps=max_steps,
            has_win=False,
            obs_widths=(S,) * N,
            action_counts=(A,) * N,
        )

    def _observe(self, s: jax.Array) -> Observation:
        N, A = self.game.num_agents, self.game.num_actions
        one_hot = jnp.broadcast_to(
            jax.nn.one_hot(s, self.game.num_states, dtype=jnp.float32), (N, self.game.num_states)
        )
        return Observation(obs=one_hot, state=one_hot, avail=jnp.ones((N, A), bool), alive=jnp.ones((N,), bool))

    def reset(self, key):
        s = jax.random.categorical(key, self._log_mu0).astype(jnp.int32)
        return TabularState(s=s, t=jnp.zeros((), jnp.int32)), self._observe(s)

    def step(self, key, state, actions):
        j = joint_index(actions.astype(jnp.int32), self.game.num_actions)
        s_next = jax.random.categorical(key, self._log_P[state.s, j]).astype(jnp.int32)
        t = state.t + 1
        reward = jnp.broadcast_to(self._R[state.s, j], (self.game.num_agents,))
        tr = Transition(
            next_obs=self._observe(s_next),
            reward=reward,
            terminated=jnp.zeros((), bool),
            truncated=t >= self._max_steps,
            won=jnp.zeros((), bool),
        )
        return TabularState(s=s_next, t=t), tr

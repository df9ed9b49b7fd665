"""A small cooperative multi-agent MDP with exact evaluation (``tabular:game``).

Everything here is exact: values, advantages and discounted state distributions of any product
(decentralised) tabular policy come from linear solves in float64 NumPy, and so do the
expectations of the repo's estimators (:func:`jaxseq.estimators.preopc`, :func:`~jaxseq.estimators.vtrace`)
under behaviour sampling. Tests check the estimators against them; ``benchmarks/tabular_improvement.py``
uses them to measure how often an agent-by-agent update improves J (A2PO paper Prop. 1 / Thm. 1).

Notation: ``S`` states, ``N`` agents, ``A`` actions per agent, ``J = A**N`` joint actions.

Joint action index (mixed radix, agent 0 most significant)::

    j = sum_i a_i * A**(N - 1 - i),      e.g. N = 3, A = 3: (a_0, a_1, a_2) = (1, 0, 2) -> 9 + 0 + 2 = 11.

A per-agent policy ``pi`` is an array ``[N, S, A]`` of probabilities; a joint policy ``[S, J]``.

Identities of the estimator expectations (proved in the docstrings, checked in ``tests/test_tabular.py``):

- PreOPC with untruncated traces (``truncate=False``) and ``lam = 1``: G + V = Q of the target
  policy, for any value vector V;
- V-trace with clip thresholds above every ratio and ``lam = 1``: the expected target is V of the
  target policy, for any V (so V of the target is the fixed point of V <- E[v]).
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
# Exact evaluation
# --------------------------------------------------------------------------------------------


def joint_policy(pi):
    """Product policy: per-agent probabilities ``[N, S, A]`` -> joint ``[S, A**N]``.

    pi_joint(j | s) = prod_i pi_i(a_i(j) | s), joint index as in the module docstring. Works on
    NumPy and JAX arrays (differentiable).
    """
    joint = pi[0]
    for i in range(1, pi.shape[0]):
        joint = (joint[:, :, None] * pi[i][:, None, :]).reshape(pi.shape[1], -1)
    return joint


def agent_log_probs(log_pi, table: np.ndarray):
    """Per-agent log-probabilities at each joint action: ``[N, S, A]``, ``[J, N]`` -> ``[N, S, J]``.

    out[i, s, j] = log pi_i(a_i(j) | s). NumPy or JAX (differentiable) arrays.
    """
    xp = jnp if isinstance(log_pi, jax.Array) else np
    return xp.stack([log_pi[i][:, table[:, i]] for i in range(table.shape[1])])


@dataclasses.dataclass(frozen=True, eq=False)
class Evaluation:
    """Exact quantities of one joint policy pi.

    V: [S] value; Q: [S, J] action value; A: [S, J] advantage Q - V; J: scalar mu0 . V;
    d: [S] normalised discounted state distribution (1 - gamma) mu0^T (I - gamma P_pi)^-1;
    P_pi: [S, S] the state chain under pi; pi: [S, J] the joint policy.
    """

    V: np.ndarray
    Q: np.ndarray
    A: np.ndarray
    J: float
    d: np.ndarray
    P_pi: np.ndarray
    pi: np.ndarray


def _as_joint(pi) -> np.ndarray:
    pi = np.asarray(pi, np.float64)
    return joint_policy(pi) if pi.ndim == 3 else pi


def evaluate(game: TabularGame, pi) -> Evaluation:
    """Exact evaluation of a product policy ``pi`` [N, S, A] (or a joint one [S, J]).

    V = (I - gamma P_pi)^-1 r_pi with P_pi[s, s'] = sum_j pi(j|s) P[s, j, s'], r_pi = sum_j pi(j|s) R[s, j];
    Q = R + gamma P V; A = Q - V; J = mu0 . V; d = (1 - gamma) (I - gamma P_pi)^-T mu0.
    """
    pj = _as_joint(pi)
    eye = np.eye(game.num_states)
    P_pi = np.einsum("sj,sjt->st", pj, game.P)
    r_pi = (pj * game.R).sum(-1)
    V = np.linalg.solve(eye - game.gamma * P_pi, r_pi)
    Q = game.R + game.gamma * game.P @ V
    d = (1.0 - game.gamma) * np.linalg.solve((eye - game.gamma * P_pi).T, game.mu0)
    return Evaluation(V=V, Q=Q, A=Q - V[:, None], J=float(game.mu0 @ V), d=d, P_pi=P_pi, pi=pj)


# --------------------------------------------------------------------------------------------
# Exact expectations of the estimators under behaviour sampling
# --------------------------------------------------------------------------------------------


def expected_td(game: TabularGame, values) -> np.ndarray:
    """E[delta_t | s_t = s, a_t = j] = R[s, j] + gamma sum_s' P[s, j, s'] V(s') - V(s); [S, J]."""
    values = np.asarray(values, np.float64)
    return game.R + game.gamma * game.P @ values - values[:, None]


def _ratios(pi_behaviour, pi_target) -> tuple[np.ndarray, np.ndarray]:
    """Joint behaviour policy b [S, J] and the joint ratio rho = pi_target / b [S, J]."""
    b = _as_joint(pi_behaviour)
    t = _as_joint(pi_target)
    return b, t / b


def preopc_expectation(
    game: TabularGame, pi_behaviour, pi_target, values, lam: float, truncate: bool = True
) -> np.ndarray:
    """E[A_t | s_t = s, a_t = j] of :func:`jaxseq.estimators.preopc` on an endless behaviour chain; [S, J].

    The code's recursion is A_t = delta_t + gamma * lam * min(1, rho_{t+1}) * A_{t+1} (A2PO paper Eq. 2;
    ``log_rhos[t]`` is the log ratio of the action at t, the trace at t uses the ratio at t + 1).
    Taking expectations given (s_t, a_t), with a_{t+1} ~ b(. | s_{t+1}):

        G(s, a) = dbar(s, a) + gamma lam sum_s' P(s'|s, a) sum_a' b(a'|s') c(s', a') G(s', a'),

    dbar = :func:`expected_td`, c = min(1, rho) (``truncate=False``: c = rho), rho the joint ratio
    pi_target / pi_behaviour (policies [N, S, A] or joint [S, J]; for A2PO the target is the
    preceding joint policy pi_hat^{i-1}). Solved as (I - gamma lam M) G = dbar over the S*J pairs.

    Identity: with ``truncate=False`` and lam = 1, b * rho = pi_target, and H = G + V satisfies
    H = R + gamma P (pi_target H), the Bellman equation of Q^{pi_target}: G + V = Q^{target} for any V.
    """
    b, rho = _ratios(pi_behaviour, pi_target)
    c = np.minimum(1.0, rho) if truncate else rho
    S, J = b.shape
    # M[(s, a), (s', a')] = P(s'|s, a) b(a'|s') c(s', a')
    M = game.P[:, :, :, None] * (b * c)[None, None, :, :]
    M = M.reshape(S * J, S * J)
    dbar = expected_td(game, values).reshape(-1)
    G = np.linalg.solve(np.eye(S * J) - game.gamma * lam * M, dbar)
    return G.reshape(S, J)


def vtrace_expectation(
    game: TabularGame, pi_behaviour, pi_target, values, lam: float, clip_rho: float = 1.0, clip_c: float = 1.0
) -> np.ndarray:
    """E[v_t | s_t = s] of the value targets of :func:`jaxseq.estimators.vtrace` on an endless behaviour chain; [S].

    The code's recursion: v_t - V(s_t) = rhobar_t delta_t + gamma c_t (v_{t+1} - V(s_{t+1})),
    rhobar_t = min(clip_rho, rho_t), c_t = lam * min(clip_c, rho_t), both at the action of step t.
    With u(s) = E[v_t - V(s_t) | s_t = s] and a_t ~ b(. | s):

        u(s) = sum_a b(a|s) [rhobar(s, a) dbar(s, a) + gamma c(s, a) sum_s' P(s'|s, a) u(s')],

    solved as (I - gamma K) u = sum_a b rhobar dbar, K[s, s'] = sum_a b(a|s) c(s, a) P(s'|s, a).
    Returns V + u.

    Identity: clip_rho, clip_c >= max rho and lam = 1 give b * rhobar = b * c = pi_target, so
    v = V + u satisfies v(s) = sum_a pi_target(a|s) (R + gamma P v)(s, a): v = V^{target} for any V.
    """
    b, rho = _ratios(pi_behaviour, pi_target)
    values = np.asarray(values, np.float64)
    rhobar = np.minimum(clip_rho, rho)
    c = lam * np.minimum(clip_c, rho)
    K = np.einsum("sa,sat->st", b * c, game.P)
    rhs = (b * rhobar * expected_td(game, values)).sum(-1)
    u = np.linalg.solve(np.eye(game.num_states) - game.gamma * K, rhs)
    return values + u


# --------------------------------------------------------------------------------------------
# Sampling (NumPy, for the estimator tests)
# --------------------------------------------------------------------------------------------


def sample_chains(
    game: TabularGame, pi, steps: int, chains: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``chains`` independent trajectories of ``steps`` transitions under joint policy ``pi``.

    pi: [N, S, A] or joint [S, J]. s_0 ~ mu0, a_t ~ pi(. | s_t), s_{t+1} ~ P(. | s_t, a_t), no episode end.
    Returns time-major (states [T + 1, B] int, joint actions [T, B] int, rewards [T, B] float64).
    """
    rng = np.random.default_rng(seed)
    pj = _as_joint(pi)
    cum_pi = np.cumsum(pj, -1)
    cum_P = np.cumsum(game.P, -1)
    states = np.empty((steps + 1, chains), np.int64)
    actions = np.empty((steps, chains), np.int64)
    states[0] = rng.choice(game.num_states, size=chains, p=game.mu0)
    for t in range(steps):
        s = states[t]
        a = _inverse_cdf(cum_pi[s], rng.random(chains))
        actions[t] = a
        states[t + 1] = _inverse_cdf(cum_P[s, a], rng.random(chains))
    rewards = game.R[states[:-1], actions]
    return states, actions, rewards


def _inverse_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise draws: cdf [B, K] cumulative probabilities, u [B] uniforms -> [B] indices."""
    return np.minimum((u[:, None] > cdf).sum(-1), cdf.shape[-1] - 1)


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

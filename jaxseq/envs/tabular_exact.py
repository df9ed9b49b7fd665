"""Exact evaluation of the tabular game (:mod:`jaxseq.envs.tabular`): values, advantages and
discounted state distributions of any product (decentralised) tabular policy from linear solves in
float64 NumPy, the exact expectations of the repo's estimators (:func:`jaxseq.estimators.preopc`,
:func:`~jaxseq.estimators.vtrace`) under behaviour sampling, and sampled chains for the estimator
tests. Tests check the estimators against them; ``benchmarks/tabular_improvement.py`` uses them to
measure how often an agent-by-agent update improves J (A2PO paper Prop. 1 / Thm. 1).

Notation and the joint action index: :mod:`jaxseq.envs.tabular`. A per-agent policy ``pi`` is an
array ``[N, S, A]`` of probabilities; a joint policy ``[S, J]``.

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

from jaxseq.envs.tabular import TabularGame

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

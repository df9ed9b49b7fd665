"""Advantage estimators: pure functions, time-major.

Every estimator takes ``rewards, values, next_values, discounts, episode_ends`` shaped ``[T, ...]``
(any trailing batch dims, broadcastable against each other), then its own parameters:

- ``values[t] = V(s_t)``; ``next_values[t] = V(s'_t)``, the value of the true next observation of
  transition t (after a time limit, the final observation of the episode, not the reset one);
- ``discounts[t] = gamma * (1 - terminated[t])``: a termination does not bootstrap, a truncation does;
- ``episode_ends[t] = terminated[t] | truncated[t]``: the trace is cut there, so nothing of the next
  episode leaks into this one.

Each checks at its entry (at trace time, in the style of rlax) that its float inputs are floats of
one rank, so an input missing its agent axis fails there instead of broadcasting silently.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def _check_inputs(*float_inputs) -> None:
    """The float inputs of an estimator: floating dtypes; all that are not scalars of one rank."""
    arrays = [x for x in float_inputs if jnp.ndim(x) > 0]
    chex.assert_type(arrays, float)
    if len(arrays) > 1:
        chex.assert_equal_rank(arrays)


def gae(rewards, values, next_values, discounts, episode_ends, lam):
    """Generalised advantage estimation (Schulman et al. 2016) with episode cuts.

    delta_t = r_t + discounts_t * next_values_t - values_t
    A_t = delta_t + discounts_t * lam * (1 - episode_ends_t) * A_{t+1}, with A_T = 0.

    Returns advantages with the broadcast shape of the inputs, [T, ...].
    """
    _check_inputs(rewards, values, next_values, discounts)
    rewards, values, next_values, discounts = jnp.broadcast_arrays(rewards, values, next_values, discounts)
    continues = jnp.broadcast_to(1.0 - jnp.asarray(episode_ends, rewards.dtype), rewards.shape)
    deltas = rewards + discounts * next_values - values
    return _backward(deltas, discounts * lam * continues)


def _backward(deltas, decay):
    """x_t = deltas_t + decay_t * x_{t+1}, x_T = 0: the recursion every estimator here reduces to."""

    def step(carry, xs):
        delta, d = xs
        x = delta + d * carry
        return x, x

    return jax.lax.scan(step, jnp.zeros_like(deltas[0]), (deltas, decay), reverse=True)[1]


def preopc(rewards, values, next_values, discounts, episode_ends, lam, log_rhos):
    """PreOPC advantages (A2PO, A2PO paper Eq. 2): GAE whose trace is cut by the preceding agents' ratio.

    A_t = delta_t + discounts_t * lam * min(1, rho_{t+1}) * (1 - episode_ends_t) * A_{t+1},
    delta_t = r_t + discounts_t * next_values_t - values_t, rho = exp(log_rhos): the joint ratio
    pi_hat / pi of the preceding agents' taken actions (log_rhos [T, ...]). lambda appears once per
    step, as in the paper (the public code may apply it twice). With log_rhos == 0 this is :func:`gae`.
    """
    _check_inputs(rewards, values, next_values, discounts, log_rhos)
    rewards, values, next_values, discounts, log_rhos = jnp.broadcast_arrays(
        rewards, values, next_values, discounts, log_rhos
    )
    continues = jnp.broadcast_to(1.0 - jnp.asarray(episode_ends, rewards.dtype), rewards.shape)
    c_next = jnp.concatenate([jnp.minimum(1.0, jnp.exp(log_rhos[1:])), jnp.zeros_like(log_rhos[:1])])
    deltas = rewards + discounts * next_values - values
    return _backward(deltas, discounts * lam * c_next * continues)


def vtrace(rewards, values, next_values, discounts, episode_ends, lam, log_rhos, clip_rho=1.0, clip_c=1.0):
    """V-trace (Espeholt et al. 2018), the operator OPSPO (OPSPO paper Eq. 14-15) cites.

    v_t - V(s_t) = rho_t * delta_t + discounts_t * c_t * (1 - episode_ends_t) * (v_{t+1} - V(s_{t+1})),
    rho_t = min(clip_rho, exp(log_rhos_t)), c_t = lam * min(clip_c, exp(log_rhos_t)),
    delta_t = r_t + discounts_t * next_values_t - values_t.

    Returns ``(value_targets v_t, advantages)`` with advantages = r_t + discounts_t * v_{t+1} - V(s_t)
    (OPSPO paper Eq. 15; where the episode ended at t, or at the last step, v_{t+1} is next_values_t).
    Reading of the extracted Eq. 14: the paper's text also puts c_t on delta_t; we follow the
    operator it cites (rho_t on delta_t), which ``rlax.vtrace`` implements and the tests compare to.
    """
    _check_inputs(rewards, values, next_values, discounts, log_rhos)
    rewards, values, next_values, discounts, log_rhos = jnp.broadcast_arrays(
        rewards, values, next_values, discounts, log_rhos
    )
    ends = jnp.broadcast_to(jnp.asarray(episode_ends, bool), rewards.shape)
    rhos = jnp.exp(log_rhos)
    deltas = jnp.minimum(clip_rho, rhos) * (rewards + discounts * next_values - values)
    decay = discounts * lam * jnp.minimum(clip_c, rhos) * (1.0 - ends.astype(rewards.dtype))
    targets = values + _backward(deltas, decay)
    following = jnp.concatenate([targets[1:], next_values[-1:]])
    bootstrap = jnp.where(ends, next_values, following)
    return targets, rewards + discounts * bootstrap - values


def stepwise_weighted_is(log_rhos, episode_starts):
    """Step-wise weighted importance sampling of the state density ratio (OPSPO paper App. B.2), the
    OPSPO state weights under parameter sharing. log_rhos [T, B] (log joint ratio of the taken
    actions), episode_starts [T, B] bool -> weights [T, B].

    w_b(t) = prod of rho over the steps of env b's episode *before* t (1 at an episode's first
    step), and omega_b(t) = w_b(t) / mean_b' w_b'(t): self-normalised across the B trajectories at
    the same time index, so the weights average 1 at every t. Readings, documented in docs/: the
    extracted formula also multiplies in rho_t and normalises to sum 1; we estimate the ratio of
    *states* (the objective applies the step's own ratio separately) and scale to mean 1, the
    scale of a density ratio. Computed in log space.
    """
    chex.assert_rank(log_rhos, 2)
    chex.assert_shape(episode_starts, log_rhos.shape)
    starts = jnp.asarray(episode_starts, bool)

    def step(log_w, xs):
        log_rho, start = xs
        log_w = jnp.where(start, 0.0, log_w)  # the weight of s_t: actions before t in this episode
        return log_w + log_rho, log_w

    _, log_w = jax.lax.scan(step, jnp.zeros_like(log_rhos[0]), (log_rhos, starts))
    log_mean = jax.nn.logsumexp(log_w, axis=1, keepdims=True) - jnp.log(log_w.shape[1])
    return jnp.exp(log_w - log_mean)

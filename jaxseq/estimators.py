"""Advantage estimators: pure functions, time-major.

Every estimator takes ``rewards, values, next_values, discounts, episode_ends`` shaped ``[T, ...]``
(any trailing batch dims, broadcastable against each other), then its own parameters:

- ``values[t] = V(s_t)``; ``next_values[t] = V(s'_t)``, the value of the true next observation of
  transition t (after a time limit, the final observation of the episode, not the reset one);
- ``discounts[t] = gamma * (1 - terminated[t])``: a termination does not bootstrap, a truncation does;
- ``episode_ends[t] = terminated[t] | truncated[t]``: the trace is cut there, so nothing of the next
  episode leaks into this one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards, values, next_values, discounts, episode_ends, lam):
    """Generalised advantage estimation (Schulman et al. 2016) with episode cuts.

    delta_t = r_t + discounts_t * next_values_t - values_t
    A_t = delta_t + discounts_t * lam * (1 - episode_ends_t) * A_{t+1}, with A_T = 0.

    Returns advantages with the broadcast shape of the inputs, [T, ...].
    """
    rewards, values, next_values, discounts = jnp.broadcast_arrays(rewards, values, next_values, discounts)
    continues = jnp.broadcast_to(1.0 - jnp.asarray(episode_ends, rewards.dtype), rewards.shape)
    deltas = rewards + discounts * next_values - values
    decay = discounts * lam * continues

    def backward(carry, xs):
        delta, d = xs
        adv = delta + d * carry
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(deltas[0]), (deltas, decay), reverse=True)
    return advantages

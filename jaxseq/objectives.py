"""Surrogate objectives, value loss and masked means. Pure functions of arrays.

Every loss takes a ``mask`` broadcastable to its per-sample terms (the death mask: 1 where the
agent acted) and averages over the masked entries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    mask = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def ppo_clip_objective(log_ratio: jax.Array, advantages: jax.Array, clip_eps: float, mask: jax.Array) -> jax.Array:
    """PPO-clip surrogate (to maximise): mean of min(r A, clip(r, 1 - eps, 1 + eps) A), r = exp(log_ratio)."""
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return masked_mean(jnp.minimum(unclipped, clipped), mask)


def policy_diagnostics(log_ratio: jax.Array, clip_eps: float, mask: jax.Array) -> dict[str, jax.Array]:
    """clip_frac: share of samples with |r - 1| > eps; approx_kl: mean of (r - 1) - log r (Schulman's k3)."""
    ratio = jnp.exp(log_ratio)
    return {
        "clip_frac": masked_mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), mask),
        "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
    }


def huber(error: jax.Array, delta: float) -> jax.Array:
    """Huber loss of ``error``; ``delta <= 0`` gives the squared error / 2."""
    if delta <= 0:
        return 0.5 * error**2
    abs_err = jnp.abs(error)
    quad = jnp.minimum(abs_err, delta)
    return 0.5 * quad**2 + delta * (abs_err - quad)


def value_loss(pred: jax.Array, old_pred: jax.Array, target: jax.Array, clip: float, delta: float,
               mask: jax.Array) -> jax.Array:
    """MAPPO's value loss: Huber (or squared) error, with the update clipped around the old prediction.

    With ``clip > 0``: max(loss(target - pred), loss(target - (old + clip(pred - old, -clip, clip)))).
    All arguments live in the (normalised) space the critic predicts in.
    """
    loss = huber(target - pred, delta)
    if clip > 0:
        clipped = old_pred + jnp.clip(pred - old_pred, -clip, clip)
        loss = jnp.maximum(loss, huber(target - clipped, delta))
    return masked_mean(loss, mask)

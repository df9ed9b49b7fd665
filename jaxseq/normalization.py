"""Running normalisation of value targets (MAPPO's ValueNorm), as a pure state + functions.

mean and mean of squares are exponential moving averages with weight ``beta`` and a debiasing
term, as in Yu et al. 2022; ``var = max(mean_sq - mean^2, 1e-2)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

BETA = 0.99999
MIN_VAR = 1e-2


@struct.dataclass
class ValueNormState:
    mean: jax.Array
    mean_sq: jax.Array
    debias: jax.Array


def init() -> ValueNormState:
    z = jnp.zeros((), jnp.float32)
    return ValueNormState(z, z, z)


def _stats(s: ValueNormState) -> tuple[jax.Array, jax.Array]:
    d = jnp.maximum(s.debias, 1e-5)
    mean = s.mean / d
    var = jnp.maximum(s.mean_sq / d - mean**2, MIN_VAR)
    return mean, var


def update(s: ValueNormState, x: jax.Array, mask: jax.Array | None = None) -> ValueNormState:
    """Fold the batch ``x`` (any shape; optional 0/1 mask) into the running statistics."""
    w = jnp.ones_like(x) if mask is None else jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    n = jnp.maximum(jnp.sum(w), 1.0)
    batch_mean = jnp.sum(x * w) / n
    batch_sq = jnp.sum(x**2 * w) / n
    return ValueNormState(
        mean=BETA * s.mean + (1 - BETA) * batch_mean,
        mean_sq=BETA * s.mean_sq + (1 - BETA) * batch_sq,
        debias=BETA * s.debias + (1 - BETA),
    )


def normalize(s: ValueNormState, x: jax.Array) -> jax.Array:
    mean, var = _stats(s)
    return (x - mean) / jnp.sqrt(var)


def denormalize(s: ValueNormState, x: jax.Array) -> jax.Array:
    mean, var = _stats(s)
    return x * jnp.sqrt(var) + mean

"""Update schemes' building blocks: epochs x minibatches of gradient steps, and per-agent views of
parameters for the agent-by-agent (sequential) scheme.

Training data are *sequences*: every leaf is ``[L, S, ...]`` (``chunk_length`` steps x sequences);
minibatches split the sequence axis S.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax


def fit(loss_fn: Callable[[Any, dict], tuple[jax.Array, dict]], params: Any, opt_state: Any,
        tx: optax.GradientTransformation, data: dict, key: jax.Array, epochs: int,
        num_minibatches: int) -> tuple[Any, Any, dict]:
    """``epochs`` passes, each over a fresh permutation of the S sequences in ``num_minibatches``
    minibatches, one gradient step of ``loss_fn(params, minibatch) -> (loss, info)`` per minibatch.

    Returns (params, opt_state, info averaged over all steps).
    """
    num_seq = jax.tree.leaves(data)[0].shape[1]
    mb_size = num_seq // num_minibatches

    def minibatch_step(carry, idx):
        params, opt_state = carry
        mb = jax.tree.map(lambda x: x[:, idx], data)
        grads, info = jax.grad(loss_fn, has_aux=True)(params, mb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), info

    def epoch(carry, k):
        perm = jax.random.permutation(k, num_seq).reshape(num_minibatches, mb_size)
        return jax.lax.scan(minibatch_step, carry, perm)

    (params, opt_state), infos = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, epochs))
    return params, opt_state, jax.tree.map(jnp.mean, infos)


def agent_view(params: Any, axes: Any, i: jax.Array) -> Any:
    """Agent i's parameters as a single-agent tree: stacked sub-trees (axis 0) indexed at i, shared
    ones (None) as they are. ``axes`` is :attr:`jaxseq.nets.MultiAgentNet.param_axes`."""
    return jax.tree.map(lambda ax, p: jax.tree.map(lambda a: a[i], p) if ax == 0 else p, axes, params,
                        is_leaf=_is_axis)


def set_agent_view(params: Any, axes: Any, i: jax.Array, view: Any) -> Any:
    """Write agent i's view back: stacked sub-trees get slice i replaced, shared ones become ``view``'s."""
    return jax.tree.map(lambda ax, p, v: jax.tree.map(lambda a, b: a.at[i].set(b), p, v) if ax == 0 else v,
                        axes, params, view, is_leaf=_is_axis)


def _is_axis(t: Any) -> bool:
    return t is None or isinstance(t, int)

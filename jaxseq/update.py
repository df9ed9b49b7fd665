"""Update schemes' building blocks: epochs x minibatches of gradient steps, and the actor optimiser
that lets a subset of agents move while the others stay exactly where they are.

Training data are *sequences*: every leaf is ``[L, S, ...]`` (``chunk_length`` steps x sequences);
minibatches split the sequence axis S.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxseq.nets import is_axis

#: ``step(params, opt_state, grads) -> (params, opt_state)``: one optimiser step.
Step = Callable[[Any, Any, Any], tuple[Any, Any]]


def fit(loss_fn: Callable[[Any, dict], tuple[jax.Array, dict]], params: Any, opt_state: Any, step: Step,
        data: dict, key: jax.Array, epochs: int, num_minibatches: int) -> tuple[Any, Any, dict]:
    """``epochs`` passes, each over a fresh permutation of the S sequences in ``num_minibatches``
    minibatches, one ``step`` on the gradient of ``loss_fn(params, minibatch) -> (loss, info)`` per
    minibatch.

    Returns (params, opt_state, info averaged over all steps).
    """
    num_seq = jax.tree.leaves(data)[0].shape[1]
    mb_size = num_seq // num_minibatches

    def minibatch_step(carry, idx):
        params, opt_state = carry
        mb = jax.tree.map(lambda x: x[:, idx], data)
        grads, info = jax.grad(loss_fn, has_aux=True)(params, mb)
        return step(params, opt_state, grads), info

    def epoch(carry, k):
        perm = jax.random.permutation(k, num_seq).reshape(num_minibatches, mb_size)
        return jax.lax.scan(minibatch_step, carry, perm)

    (params, opt_state), infos = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, epochs))
    return params, opt_state, jax.tree.map(jnp.mean, infos)


def plain_step(tx: optax.GradientTransformation) -> Step:
    def step(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step


@dataclasses.dataclass(frozen=True)
class AgentOptimizer:
    """``tx`` once over the shared parameters and once *per agent* over the stacked ones.

    ``axes`` is :attr:`jaxseq.nets.MultiAgentNet.param_axes`. Every agent has its own optimiser
    state (moments, step count, gradient-norm clip) for its own slice, as with HARL's per-agent
    optimisers; shared parameters (FuPS, the PaPS trunk) have one state, as with a single shared
    network. :meth:`step` moves only the ``members``: the other agents' slices and optimiser states
    are left bit-for-bit unchanged (a zero gradient would still move them through Adam's momentum).
    """

    tx: optax.GradientTransformation
    axes: Any
    num_agents: int

    def split(self, tree: Any) -> tuple[Any, Any]:
        """(stacked part, shared part): the same tree with the other part's sub-trees set to None."""
        stacked = jax.tree.map(lambda ax, t: t if ax == 0 else None, self.axes, tree, is_leaf=is_axis)
        shared = jax.tree.map(lambda ax, t: None if ax == 0 else t, self.axes, tree, is_leaf=is_axis)
        return stacked, shared

    def merge(self, stacked: Any, shared: Any) -> Any:
        return jax.tree.map(lambda ax, s, h: s if ax == 0 else h, self.axes, stacked, shared, is_leaf=is_axis)

    def init(self, params: Any) -> dict:
        stacked, shared = self.split(params)
        return {"stacked": jax.vmap(self.tx.init, axis_size=self.num_agents)(stacked), "shared": self.tx.init(shared)}

    def step(self, members: jax.Array) -> Step:
        """The optimiser step that updates the agents where ``members`` [N] bool is True."""

        def keep_members(new, old):
            return jnp.where(members.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

        def step(params, opt_state, grads):
            p_stacked, p_shared = self.split(params)
            g_stacked, g_shared = self.split(grads)
            u_stacked, s_stacked = jax.vmap(self.tx.update)(g_stacked, opt_state["stacked"], p_stacked)
            u_stacked = jax.tree.map(lambda u: keep_members(u, jnp.zeros_like(u)), u_stacked)
            s_stacked = jax.tree.map(keep_members, s_stacked, opt_state["stacked"])
            u_shared, s_shared = self.tx.update(g_shared, opt_state["shared"], p_shared)
            updates = self.merge(u_stacked, u_shared)
            return optax.apply_updates(params, updates), {"stacked": s_stacked, "shared": s_shared}

        return step

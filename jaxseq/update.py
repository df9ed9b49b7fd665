"""The gradient-step building blocks under every update scheme (the schemes themselves are in
:mod:`jaxseq.schemes`): epochs x minibatches of gradient steps, and the actor optimiser that lets
a subset of agents move while the others stay exactly where they are.

Training data are *sequences*: every leaf is ``[L, S, ...]`` (``sequence_length`` steps x sequences);
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
#: Optimiser state of shared actor weights: one per agent, or one (HARL's share_param).
SHARED_OPTIMIZERS = ("per-agent", "one")
#: Learning-rate schedules over a run: constant, or linear decay to 0 (JaxMARL's ``ANNEAL_LR``).
LR_SCHEDULES = ("constant", "linear")


def linear_lr_scale(update: jax.Array, total: int) -> jax.Array:
    """The factor on the learning rates of update ``update`` (0-based, [] int) of ``total`` under
    the linear schedule: ``1 - update / total``, constant within an update (the first at the full
    rate, the last at 1 / total of it, 0 after; never negative)."""
    return jnp.maximum(0.0, 1.0 - update.astype(jnp.float32) / total)


def fit(
    loss_fn: Callable[[Any, dict], tuple[jax.Array, dict]],
    params: Any,
    opt_state: Any,
    step: Step,
    data: dict,
    key: jax.Array,
    epochs: int,
    num_minibatches: int,
) -> tuple[Any, Any, dict]:
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
    """``tx`` per agent over the stacked parameters, and over the shared ones either per agent
    (``per_agent_shared``) or once.

    ``axes`` is :attr:`jaxseq.nets.MultiAgentNet.param_axes`. Every agent has its own optimiser
    state (moments, step count, gradient-norm clip) for its own slice of stacked parameters (NoPS,
    PaPS heads), as with HARL's per-agent optimisers. Shared parameters (FuPS, the PaPS trunk) get
    either one state per agent, so one agent's momentum never carries into another agent's steps
    (a unit of several agents applies the mean of its unit agents' updates), or a single state, as with
    HARL's ``share_param`` (one network object, one optimiser). :meth:`step` moves only the
    unit agents (``in_unit``): the other agents' slices and optimiser states are left bit-for-bit unchanged (a
    zero gradient would still move them through Adam's momentum). When every agent is in the unit and
    the states agree, both variants are the same single optimiser (the simultaneous scheme).
    """

    tx: optax.GradientTransformation
    axes: Any
    num_agents: int
    per_agent_shared: bool = True

    def split(self, tree: Any) -> tuple[Any, Any]:
        """(stacked part, shared part): the same tree with the other part's sub-trees set to None."""
        stacked = jax.tree.map(lambda ax, t: t if ax == 0 else None, self.axes, tree, is_leaf=is_axis)
        shared = jax.tree.map(lambda ax, t: None if ax == 0 else t, self.axes, tree, is_leaf=is_axis)
        return stacked, shared

    def merge(self, stacked: Any, shared: Any) -> Any:
        return jax.tree.map(lambda ax, s, h: s if ax == 0 else h, self.axes, stacked, shared, is_leaf=is_axis)

    def init(self, params: Any) -> dict:
        stacked, shared = self.split(params)
        n = self.num_agents
        return {
            "stacked": jax.vmap(self.tx.init, axis_size=n)(stacked),
            "shared": (
                jax.vmap(self.tx.init, in_axes=None, axis_size=n)(shared)
                if self.per_agent_shared
                else self.tx.init(shared)
            ),
        }

    def step(self, in_unit: jax.Array) -> Step:
        """The optimiser step that updates the agents where ``in_unit`` [N] bool is True."""

        def keep_unit(new, old):
            return jnp.where(in_unit.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

        weights = in_unit / jnp.maximum(in_unit.sum(), 1)

        def step(params, opt_state, grads):
            p_stacked, p_shared = self.split(params)
            g_stacked, g_shared = self.split(grads)
            u_stacked, s_stacked = jax.vmap(self.tx.update)(g_stacked, opt_state["stacked"], p_stacked)
            u_stacked = jax.tree.map(lambda u: keep_unit(u, jnp.zeros_like(u)), u_stacked)
            s_stacked = jax.tree.map(keep_unit, s_stacked, opt_state["stacked"])
            if self.per_agent_shared:
                u_each, s_shared = jax.vmap(self.tx.update, in_axes=(None, 0, None))(
                    g_shared, opt_state["shared"], p_shared
                )
                u_shared = jax.tree.map(lambda u: jnp.tensordot(weights, u, axes=1), u_each)
                s_shared = jax.tree.map(keep_unit, s_shared, opt_state["shared"])
            else:
                u_shared, s_shared = self.tx.update(g_shared, opt_state["shared"], p_shared)
            updates = self.merge(u_stacked, u_shared)
            return optax.apply_updates(params, updates), {"stacked": s_stacked, "shared": s_shared}

        return step

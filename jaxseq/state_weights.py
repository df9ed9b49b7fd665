"""OPSPO's learned state weights: the omega-net path of the state-distribution correction under NoPS
(seed 003 Sec. 3.2 and Alg. 1-2); under parameter sharing the trainer uses
:func:`jaxseq.estimators.stepwise_weighted_is` instead.

Each update pushes its batch and its behaviour policy's parameters into a ring of ``omega_n`` slots
(:class:`DensityState`). Data states are ``obs.state`` of agent 0 (its observation and the
team-wide part of the state). The behaviour distribution of the ring's data is the mixture
b(a|s) = mean_j pi_j(a|s) of the slots' policies (Alg. 2), from a cache of every slot's joint
log-probabilities under every slot's policy: a push fills one row and one column, 2 W - 1 policy
evaluations of one batch (W = ``omega_n``).

The ratio the correction needs is d^{pi-hat^{i-1}} / d^{pi_k} on the current batch (states drawn
from the newest behaviour pi_k), while Alg. 2 on the ring learns ratios over the mixture's state
distribution d_mix. We learn both, omega_k = d^{pi_k} / d_mix (once per update, warm-started across
updates) and omega^{i-1} = d^{pi-hat^{i-1}} / d_mix (per unit, starting from omega_k's nets, warm
across units), and weight a state by min(omega^{i-1}(s) / omega_k(s), 1), each ratio scaled to mean 1
over the ring. Seed 003 applies the mixture ratio directly; the two coincide in expectation when
omega_n = 1. docs/design.md says more.

Policies are re-evaluated one step at a time from the recurrent carries stored with the data: exact
for MLP actors, for GRU actors an approximation (the carry came from the behaviour's parameters).

Shapes: T = rollout_length, B = num_envs, N agents, D = state width, W = omega_n, M = density_batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxseq import density, nets, policies


@struct.dataclass
class DensityState:
    """ratio: omega_k's nets (warm across updates); ring: per slot {"data": batch fields [T(+1), B, ...],
    "params": the behaviour actor}; log_probs [W, W, T, B]: slot d's data's joint log-probabilities
    under slot j's policy (entry [d, j])."""

    ratio: density.RatioState
    ring: density.Ring
    log_probs: jax.Array


@dataclasses.dataclass(frozen=True)
class LearnedStateWeights:
    actor: nets.MultiAgentNet
    policy: policies.Categorical | policies.Gaussian
    learner: density.DensityRatio
    slots: int
    batch_size: int

    # -- the ring -------------------------------------------------------------------------------
    def init(self, key: jax.Array, data_example: dict, actor_params: Any) -> DensityState:
        """An empty ring shaped like ``data_example`` (see :meth:`push`)."""
        ring = density.Ring.create({"data": data_example, "params": actor_params}, self.slots)
        T, B = data_example["valid"].shape
        return DensityState(ratio=self.learner.init(key), ring=ring,
                            log_probs=jnp.zeros((self.slots, self.slots, T, B), jnp.float32))

    def _agent_log_probs(self, params: Any, rows: dict) -> jax.Array:
        """Per-agent log pi(a|s) of the taken actions at ``rows`` (leading dims [...]) -> [..., N]."""
        start = jnp.broadcast_to(rows["start"][..., None], rows["avail"].shape[:-1])
        _, logits = self.actor.apply(params, rows["actor_carry"], rows["obs"], start)
        return self.policy.log_prob(logits, rows["avail"], rows["actions"])

    def push(self, ds: DensityState, data: dict, params: Any) -> DensityState:
        """Store one update's batch and behaviour parameters in the oldest slot.

        data: states [T + 1, B, D] (s_0..s_T; s_{t+1} is the next state of step t), valid [T, B]
        (the step did not end its episode, so s_{t+1} follows it), start [T, B], obs [T, B, N, O],
        avail [T, B, N, A], actions [T, B, N] (discrete) or [T, B, N, A] (continuous), actor_carry [T, B, N, C].
        """
        slot = ds.ring.head
        ring = ds.ring.push({"data": data, "params": params})
        joint = lambda p, d: self._agent_log_probs(p, d).sum(-1)  # noqa: E731  [T, B]
        row = jax.lax.map(lambda p: joint(p, data), ring.items["params"])  # new data, every policy
        column = jax.lax.map(lambda d: joint(params, d), ring.items["data"])  # every batch, the new policy
        return ds.replace(ring=ring, log_probs=ds.log_probs.at[slot].set(row).at[:, slot].set(column))

    @staticmethod
    def memory_bytes(ds: DensityState) -> int:
        """Bytes held by the ring buffers and the log-probability cache (one seed)."""
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves((ds.ring, ds.log_probs)))

    # -- Alg. 2 on the ring -----------------------------------------------------------------------
    def _sample(self, ds: DensityState, key: jax.Array) -> tuple[dict, jax.Array, jax.Array]:
        """M transitions uniformly over the filled slots' steps, M initial states uniformly over the
        episode starts; returns (rows [M, ...], log b(a|s) [M], initial states [M, D])."""
        items, filled = ds.ring.items["data"], ds.ring.filled
        W, T, B = ds.log_probs.shape[0], *ds.log_probs.shape[2:]
        k_slot, k_t, k_b, k_0 = jax.random.split(key, 4)
        M = self.batch_size
        slot = jax.random.categorical(k_slot, jnp.where(filled, 0.0, -jnp.inf), shape=(M,))
        t, b = jax.random.randint(k_t, (M,), 0, T), jax.random.randint(k_b, (M,), 0, B)
        rows = jax.tree.map(lambda x: x[slot, t, b], {k: v for k, v in items.items() if k != "states"})
        rows["s"], rows["s_next"] = items["states"][slot, t, b], items["states"][slot, t + 1, b]
        log_b = density.mixture_log_prob(jnp.moveaxis(ds.log_probs[slot, :, t, b], -1, 0), filled)
        # inverse CDF over the episode starts (a categorical over W * T * B logits would draw that many
        # Gumbel variables per sample)
        starts = jnp.cumsum((items["start"] & filled[:, None, None]).ravel())
        flat0 = jnp.searchsorted(starts, jax.random.uniform(k_0, (M,)) * starts[-1], side="right")
        flat0 = jnp.minimum(flat0, starts.shape[0] - 1)
        initial = items["states"][jnp.unravel_index(flat0, (W, T, B))]
        return rows, log_b, initial

    def fit(self, rs: density.RatioState, ds: DensityState, behaviour: Any, params: Any, preceding: jax.Array,
            key: jax.Array) -> tuple[density.RatioState, jax.Array, dict]:
        """Alg. 2 for the target policy that acts with ``params`` for the agents where ``preceding``
        [N] is True and with ``behaviour`` for the others. Returns the nets, omega's mean over the
        last batch's states (its scale; E_{d_mix}[omega] = 1) and the objective's last values."""

        def batch(k):
            rows, log_b, initial = self._sample(ds, k)
            own, old = self._agent_log_probs(params, rows), self._agent_log_probs(behaviour, rows)
            log_target = jnp.where(preceding, own, old).sum(-1)
            ones = jnp.ones(self.batch_size)
            return density.TransitionBatch(states=rows["s"], next_states=rows["s_next"], log_ratio=log_target - log_b,
                                           weights=rows["valid"].astype(jnp.float32), initial=initial,
                                           initial_weights=ones)

        batches = jax.vmap(batch)(jax.random.split(key, self.learner.omega_steps))
        rs, info = self.learner.fit(rs, batches)
        last = batches.states[-1], batches.weights[-1]
        scale = jnp.sum(self.learner.omega(rs.omega, last[0]) * last[1]) / jnp.maximum(last[1].sum(), 1.0)
        return rs, scale, info

    def weights(self, behaviour: tuple, preceding: tuple, states: jax.Array) -> jax.Array:
        """min(omega^{i-1}(s) / omega_k(s), 1) at ``states`` [..., D]; ``behaviour`` and ``preceding``
        are (nets, scale) pairs from :meth:`fit`."""
        (rs_k, scale_k), (rs_p, scale_p) = behaviour, preceding
        ratio = (self.learner.omega(rs_p.omega, states) / scale_p) / (self.learner.omega(rs_k.omega, states) / scale_k)
        return jnp.minimum(ratio, 1.0)

"""OPSPO's state weights min(omega, 1) (the state-distribution correction, OPSPO paper Sec. 3.2), as
one interface with three implementations, chosen by the algorithm's resolved ``state_weights``
(:func:`make_state_weights`):

- :class:`NoStateWeights` ("none"): ones;
- :class:`WeightedISStateWeights` ("wis"): step-wise weighted importance sampling of each unit
  agent's preceding ratio (:func:`jaxseq.estimators.stepwise_weighted_is`, OPSPO paper App. B.2),
  the paper's choice under parameter sharing;
- :class:`LearnedStateWeights` ("bch"): learned omega-nets (OPSPO paper Alg. 1-2), its choice under NoPS.

Each has ``init(key, actor_params) -> extra`` (its entries of ``TrainState.extra``), ``record(extra,
batch, last_obs, behaviour_params) -> extra`` after every rollout, ``begin(extra, behaviour_params, key) ->
(extra, nets)`` once per update before the agent units, and ``unit(extra, nets, log_rho, starts,
behaviour_params, params, preceding, key) -> (weights, nets, info)`` per unit.

The learned weights:

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
over the ring. OPSPO paper applies the mixture ratio directly; the two coincide in expectation when
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

from jaxseq import density, estimators, nets, policies
from jaxseq.envs import EnvSpec


@dataclasses.dataclass(frozen=True)
class NoStateWeights:
    """Weights 1 (no state-distribution correction, and every algorithm other than OPSPO)."""

    def init(self, key: jax.Array, actor_params: Any) -> dict:
        return {}

    def record(self, extra: dict, batch: Any, last_obs: Any, behaviour_params: Any) -> dict:
        return extra

    def begin(self, extra: dict, behaviour_params: Any, key: jax.Array) -> tuple[dict, tuple]:
        return extra, ()

    def unit(self, extra, nets, log_rho, starts, behaviour_params, params, preceding, key):
        """Ones [T, B, 1] for a unit whose agents' preceding log ratios are ``log_rho`` [T, B, K]."""
        return jnp.ones_like(log_rho[..., :1]), nets, {}


@dataclasses.dataclass(frozen=True)
class WeightedISStateWeights(NoStateWeights):
    """min(omega, 1) with omega [T, B, K] the step-wise weighted IS estimate of each unit agent's
    state ratio from its preceding log ratios ``log_rho`` [T, B, K] and the episode starts [T, B]."""

    def unit(self, extra, nets, log_rho, starts, behaviour_params, params, preceding, key):
        omega = jax.vmap(estimators.stepwise_weighted_is, in_axes=(-1, None), out_axes=-1)(log_rho, starts)
        return jnp.minimum(omega, 1.0), nets, {}


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
    spec: EnvSpec
    rollout_length: int
    num_envs: int

    # -- the interface ----------------------------------------------------------------------------
    def init(self, key: jax.Array, actor_params: Any) -> dict:
        """``{"density": an empty ring}`` shaped like one rollout (see :meth:`push`)."""
        spec, T, B = self.spec, self.rollout_length, self.num_envs
        N, f32 = spec.num_agents, jnp.float32
        shape, dtype = self.policy.action_shape(spec.num_actions)
        example = {
            "states": jnp.zeros((T + 1, B, spec.state_dim), f32),
            "valid": jnp.zeros((T, B), bool),
            "start": jnp.zeros((T, B), bool),
            "obs": jnp.zeros((T, B, N, spec.obs_dim), f32),
            "avail": jnp.zeros((T, B, N, spec.num_actions), bool),
            "actions": jnp.zeros((T, B, N, *shape), dtype),
            "actor_carry": jnp.zeros((T, B, N, self.actor.carry_dim), f32),
        }
        return {"density": self.init_ring(key, example, actor_params)}

    def record(self, extra: dict, batch: Any, last_obs: Any, behaviour_params: Any) -> dict:
        """Push one rollout (a :class:`jaxseq.types.Rollout`; ``last_obs`` the observation after its
        last step) and its behaviour policy's parameters."""
        states = jnp.concatenate([batch.obs.state[:, :, 0], last_obs.state[None, :, 0]])
        data = {
            "states": states,
            "valid": ~(batch.terminated | batch.truncated),
            "start": batch.start,
            "obs": batch.obs.obs,
            "avail": batch.obs.avail,
            "actions": batch.actions,
            "actor_carry": batch.actor_carry,
        }
        return {**extra, "density": self.push(extra["density"], data, behaviour_params)}

    def begin(self, extra: dict, behaviour_params: Any, key: jax.Array) -> tuple[dict, tuple]:
        """Fit omega_k = d^{pi_k} / d_mix of this update's behaviour policy (warm-started from the
        last update). Returns the new extra and the units' initial nets: the behaviour's and the
        preceding policy's (nets, scale), the latter starting from the former."""
        ds = extra["density"]
        no_agent = jnp.zeros((self.spec.num_agents,), bool)
        rs, scale, _ = self.fit(ds.ratio, ds, behaviour_params, behaviour_params, no_agent, key)
        return {**extra, "density": ds.replace(ratio=rs)}, ((rs, scale), (rs, scale))

    def unit(self, extra, nets, log_rho, starts, behaviour_params, params, preceding, key):
        """min(omega^{i-1} / omega_k, 1) [T, B, 1] on this batch's states, omega^{i-1} refitted for the
        policy whose ``preceding`` [N] agents act with ``params`` (ones when none has moved)."""
        ds = extra["density"]
        behaviour, (rs_p, _) = nets
        rs_p, scale_p, info = self.fit(rs_p, ds, behaviour_params, params, preceding, key)
        states = ds.ring.items["data"]["states"][ds.ring.newest, :-1]  # this batch's s_t, [T, B, D]
        weights = jnp.where(preceding.any(), self.weights(behaviour, (rs_p, scale_p), states), 1.0)[..., None]
        return weights, (behaviour, (rs_p, scale_p)), info

    # -- the ring -------------------------------------------------------------------------------
    def init_ring(self, key: jax.Array, data_example: dict, actor_params: Any) -> DensityState:
        """An empty ring shaped like ``data_example`` (see :meth:`push`)."""
        ring = density.Ring.create({"data": data_example, "params": actor_params}, self.slots)
        T, B = data_example["valid"].shape
        return DensityState(
            ratio=self.learner.init(key), ring=ring, log_probs=jnp.zeros((self.slots, self.slots, T, B), jnp.float32)
        )

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

    def fit(
        self,
        rs: density.RatioState,
        ds: DensityState,
        behaviour: Any,
        params: Any,
        preceding: jax.Array,
        key: jax.Array,
    ) -> tuple[density.RatioState, jax.Array, dict]:
        """Alg. 2 for the target policy that acts with ``params`` for the agents where ``preceding``
        [N] is True and with ``behaviour`` for the others. Returns the nets, omega's mean over the
        last batch's states (its scale; E_{d_mix}[omega] = 1) and the objective's last values."""

        def batch(k):
            rows, log_b, initial = self._sample(ds, k)
            own, old = self._agent_log_probs(params, rows), self._agent_log_probs(behaviour, rows)
            log_target = jnp.where(preceding, own, old).sum(-1)
            ones = jnp.ones(self.batch_size)
            return density.TransitionBatch(
                states=rows["s"],
                next_states=rows["s_next"],
                log_ratio=log_target - log_b,
                weights=rows["valid"].astype(jnp.float32),
                initial=initial,
                initial_weights=ones,
            )

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


METHODS = ("none", "wis", "bch")
#: Config.opspo_sdc_method: a method, or "auto" (bch under NoPS, wis under parameter sharing).
SDC_METHODS = ("auto", "bch", "wis")


def make_state_weights(
    method: str, actor: nets.MultiAgentNet, policy, spec: EnvSpec, config
) -> NoStateWeights | LearnedStateWeights:
    """The state weights named ``method`` (one of :data:`METHODS`) for ``config``."""
    if method == "none":
        return NoStateWeights()
    if method == "wis":
        return WeightedISStateWeights()
    learner = density.DensityRatio(
        state_dim=spec.state_dim,
        gamma=config.gamma,
        hidden=config.density_hidden,
        lr=config.density_lr,
        omega_steps=config.omega_e,
        f_steps=config.f_e,
    )
    return LearnedStateWeights(
        actor, policy, learner, config.omega_n, config.density_batch, spec, config.rollout_length, config.num_envs
    )

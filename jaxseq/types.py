"""The two pytrees the compiled program passes around: the training state and a rollout batch.

Array layout is time-major ``[T, B, N, ...]`` (time, env, agent). Seeds (and any other vmapped
member axis) are added in front by ``jax.vmap``.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import struct

from jaxseq import normalization
from jaxseq.envs import EnvState, Observation


@struct.dataclass
class TrainState:
    """Everything one seed's training needs; a pytree, so it vmaps, jits and checkpoints."""

    actor_params: Any
    critic_params: Any
    actor_opt: Any
    critic_opt: Any
    value_norm: normalization.ValueNormState
    env_state: EnvState  # [B] envs
    obs: Observation  # [B, N, ...] the observation to act on next
    start: jax.Array  # [B] bool: obs is the first of an episode
    actor_carry: jax.Array  # [B, N, C]
    critic_carry: jax.Array  # [B, N, C]
    key: jax.Array
    update: jax.Array  # [] int32, updates done
    #: State an algorithm declares for itself, by name: its scheme's (RPISA: "stage_remaining",
    #: the agents not yet updated in this stage) and its state weights' (OPSPO with learned
    #: omega-nets: "density"). Empty for the others.
    extra: dict
    #: A sweep member's values of the swept fields, {field: float32 []} (:mod:`jaxseq.sweep`);
    #: empty without a sweep.
    hyper: dict


@struct.dataclass
class Rollout:
    """A batch, time-major [T, B, ...]. Carries are the network inputs before the step's reset."""

    obs: Observation  # [T, B, N, ...]
    start: jax.Array  # [T, B]
    actions: jax.Array  # [T, B, N] (discrete) or [T, B, N, A] (continuous)
    log_probs: jax.Array  # [T, B, N]
    value_preds: jax.Array  # [T, B, N] critic outputs (normalised space when value_norm)
    next_value_preds: jax.Array  # [T, B, N] critic outputs on the true next observation
    rewards: jax.Array  # [T, B, N]
    terminated: jax.Array  # [T, B]
    truncated: jax.Array  # [T, B]
    actor_carry: jax.Array  # [T, B, N, C]
    critic_carry: jax.Array  # [T, B, N, C]

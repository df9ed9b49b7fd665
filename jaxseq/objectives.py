"""Surrogate objectives, value loss and masked means. Pure functions of arrays.

Every loss takes a ``mask`` broadcastable to its per-sample terms (the death mask: 1 where the
agent acted) and averages over the masked entries. The surrogates check at their entry (at trace
time, in the style of rlax) that the per-agent inputs ([..., K], or [..., 1] for one value shared by
the unit) have one rank, so an input missing its agent axis fails there instead of broadcasting
silently.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def _check_ranks(*inputs) -> None:
    """The per-agent inputs of a surrogate: every one that is not a scalar has the same rank."""
    arrays = [x for x in inputs if jnp.ndim(x) > 0]
    if len(arrays) > 1:
        chex.assert_equal_rank(arrays)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    mask = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def ppo_clip_objective(log_ratio: jax.Array, advantages: jax.Array, clip_eps: float, mask: jax.Array) -> jax.Array:
    """PPO-clip surrogate (to maximise): mean of min(r A, clip(r, 1 - eps, 1 + eps) A), r = exp(log_ratio)."""
    _check_ranks(log_ratio, advantages)
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return masked_mean(jnp.minimum(unclipped, clipped), mask)


def policy_diagnostics(log_ratio: jax.Array, clip_eps: float, mask: jax.Array) -> dict[str, jax.Array]:
    """clip_frac: share of samples with |r - 1| > eps; approx_kl: mean of (r - 1) - log r (Schulman's
    k3); tv: 0.5 * E|r - 1|, the sample estimate of the total-variation distance between the new and
    the behaviour policy (E over behaviour actions of |pi_new/pi_old - 1| = sum |pi_new - pi_old|)."""
    ratio = jnp.exp(log_ratio)
    return {
        "clip_frac": masked_mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), mask),
        "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
        "tv": 0.5 * masked_mean(jnp.abs(ratio - 1.0), mask),
    }


def huber(error: jax.Array, delta: float) -> jax.Array:
    """Huber loss of ``error``; ``delta <= 0`` gives the squared error / 2."""
    if delta <= 0:
        return 0.5 * error**2
    abs_err = jnp.abs(error)
    quad = jnp.minimum(abs_err, delta)
    return 0.5 * quad**2 + delta * (abs_err - quad)


def value_loss(
    pred: jax.Array, old_pred: jax.Array, target: jax.Array, clip: float, delta: float, mask: jax.Array
) -> jax.Array:
    """MAPPO's value loss: Huber (or squared) error, with the update clipped around the old prediction.

    With ``clip > 0``: max(loss(target - pred), loss(target - (old + clip(pred - old, -clip, clip)))).
    All arguments live in the (normalised) space the critic predicts in.
    """
    loss = huber(target - pred, delta)
    if clip > 0:
        clipped = old_pred + jnp.clip(pred - old_pred, -clip, clip)
        loss = jnp.maximum(loss, huber(target - clipped, delta))
    return masked_mean(loss, mask)


#: Bound on the log of a product of other agents' ratios that is used unclipped (HAPPO's factor,
#: FP3O's R, the FP3O guard's joint ratio): a sum over up to n - 1 agents' log ratios can reach
#: float32's exp overflow (88) with many agents, and an inf factor stops a run whose parameters
#: are fine. e^20 (about 5e8) is far past any factor that carries information.
LOG_PRODUCT_BOUND = 20.0


def bounded_exp(log_product: jax.Array) -> jax.Array:
    """exp of a log product of ratios, clipped to [-LOG_PRODUCT_BOUND, LOG_PRODUCT_BOUND] first."""
    return jnp.exp(jnp.clip(log_product, -LOG_PRODUCT_BOUND, LOG_PRODUCT_BOUND))


def happo_objective(log_ratio, log_factor, advantages, clip_eps, mask):
    """HAPPO (Kuba et al. 2022): M * min(r A, clip(r, 1 +/- eps) A), with M = exp(log_factor) the
    (stop-gradient, unclipped but for :data:`LOG_PRODUCT_BOUND`) product of the preceding agents'
    ratios. M > 0, so this is PPO-clip on the advantages M * A."""
    _check_ranks(log_ratio, log_factor, advantages)
    factor = jax.lax.stop_gradient(bounded_exp(log_factor))
    return ppo_clip_objective(log_ratio, factor * advantages, clip_eps, mask)


def a2po_objective(log_ratio, log_rho, advantages, clip_eps, mask):
    """A2PO (A2PO paper Eq. 6): min(l A, clip(l, 1 +/- eps) A), l = r_i * clip(rho, 1 +/- eps / 2),
    rho = exp(log_rho) the preceding agents' joint ratio (no gradient). ``clip_eps`` may be the
    adaptive C(eps, k)."""
    _check_ranks(log_ratio, log_rho, advantages)
    rho = jax.lax.stop_gradient(jnp.clip(jnp.exp(log_rho), 1.0 - clip_eps / 2, 1.0 + clip_eps / 2))
    return ppo_clip_objective(log_ratio + jnp.log(rho), advantages, clip_eps, mask)


def others_log_ratio(log_ratio, mask):
    """For each agent j of the last axis, the summed log ratio of the *other* agents:
    sum_{k != j, mask_k > 0} log r_k, [..., K] -> [..., K] (agents with mask 0 count as ratio 1;
    the mask may also be sample weights). exp of it is CoPPO's prod_{j != i} r_j and FP3O's R
    (FP3O paper Eq. 10)."""
    masked = jnp.where(mask > 0, log_ratio, 0.0)
    return jnp.sum(masked, axis=-1, keepdims=True) - masked


def fp3o_objective(log_ratio, log_mid, advantages, clip_eps, mask):
    """FP3O's dependence-step surrogate (FP3O paper Eq. 10), per agent j of the last axis K:

        min(r_j R_j A, clip(r_j, 1 +/- eps) R_j A),   R_j = sg(prod_{k != j} pi_mid^k / pi_old^k),

    r_j = exp(log_ratio) agent j's current ratio over the behaviour (old) policy, log_mid [..., K]
    every agent's middle log ratio log pi_mid^k - log pi_old^k (from the independence step),
    ``mask`` also selecting which agents enter R (:func:`others_log_ratio`). R > 0 is outside the
    clip, so this is PPO-clip on R A (HAPPO's form with the others' middle ratio for M). With
    log_mid = 0 (R = 1) it is the independence step's plain PPO-clip (Eq. 9)."""
    return happo_objective(log_ratio, others_log_ratio(log_mid, mask), advantages, clip_eps, mask)


def fp3o_guard(log_mid, advantages, mask, tol: float = 1e-5):
    """The improvement guard of the public FP3O code (off by default; not in FP3O paper's text):
    True (run the dependence step) unless the joint middle surrogate falls below the independent one,

        sum_j sum_t prod_k r_mid^k A_j  + tol  <  sum_j sum_t r_mid^j A_j,

    sums over the agents j of the last axis and the samples t weighted by ``mask`` (the death mask,
    or any non-negative sample weights; agents with mask 0 count as ratio 1 in the product);
    log_mid [..., K] every agent's middle log ratio, advantages [..., K] as the surrogate sees them
    (normalised)."""
    mask = jnp.broadcast_to(mask, log_mid.shape).astype(log_mid.dtype)
    joint = bounded_exp(jnp.sum(jnp.where(mask > 0, log_mid, 0.0), axis=-1, keepdims=True))
    return jnp.sum(joint * advantages * mask) + tol >= jnp.sum(jnp.exp(log_mid) * advantages * mask)


def coppo_objective(log_ratio, log_others, advantages, clip_eps, clip_others, mask):
    """CoPPO (Wu et al. 2021) without the advantage mix: agent i's ratio times
    sg(clip(prod_{j != i} r_j, 1 +/- clip_others)), clipped as a whole with clip_eps."""
    _check_ranks(log_ratio, log_others, advantages)
    others = jax.lax.stop_gradient(jnp.clip(jnp.exp(log_others), 1.0 - clip_others, 1.0 + clip_others))
    return ppo_clip_objective(log_ratio + jnp.log(others), advantages, clip_eps, mask)


def opspo_clip_range(log_rho, eps1: float, eps2: float):
    """OPSPO's dynamic base clip range (OPSPO paper Sec. 3.3), per sample, from the preceding joint ratio
    rho = exp(log_rho): l = min[max(rho, 1/rho) (1 - eps1), 1 - eps2], h = max[min(rho, 1/rho) (1 + eps1), 1 + eps2].
    At rho = 1 it is the widest, (1 - eps1, 1 + eps1); far off-policy it narrows to (1 - eps2, 1 + eps2)
    (eps2 < eps1). Returns (l, h)."""
    off = jnp.exp(jnp.abs(log_rho))  # max(rho, 1/rho)
    return jnp.minimum(off * (1.0 - eps1), 1.0 - eps2), jnp.maximum((1.0 + eps1) / off, 1.0 + eps2)


def opspo_objective(
    log_ratio, log_rho, advantages, weights, eps1: float, eps2: float, clip_range_correction: bool, mask
):
    """OPSPO's surrogate (OPSPO paper Eq. 20), to maximise:

        min(r rt w A, clip(r rt, l rt, h rt) w A),   rt = clip(rho, 1 +/- eps1),

    r = exp(log_ratio) agent i's ratio, rho = exp(log_rho) the preceding agents' joint ratio (no
    gradient), w the state weights (the caller passes min(omega, 1) with the state-distribution
    correction, 1 without), (l, h) = :func:`opspo_clip_range`. Without the clip-range correction
    the range is the fixed (1 - eps1, 1 + eps1), not scaled by rt (our reading of the ablation: the
    stabilising clips on rho and omega stay); with rho = 1 both are PPO-clip with eps1.
    """
    _check_ranks(log_ratio, log_rho, advantages, weights)
    rho = jax.lax.stop_gradient(jnp.clip(jnp.exp(log_rho), 1.0 - eps1, 1.0 + eps1))
    weighted = jax.lax.stop_gradient(weights) * advantages
    joint = jnp.exp(log_ratio) * rho
    if clip_range_correction:
        low, high = opspo_clip_range(jax.lax.stop_gradient(log_rho), eps1, eps2)
        clipped = jnp.clip(joint, low * rho, high * rho)
    else:
        clipped = jnp.clip(joint, 1.0 - eps1, 1.0 + eps1)
    return masked_mean(jnp.minimum(joint * weighted, clipped * weighted), mask)

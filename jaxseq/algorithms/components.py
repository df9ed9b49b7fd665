"""The named pieces an algorithm declaration refers to: estimators, surrogate objectives and update
schemes, each adapted to one calling convention so the update engine never asks which one it runs.

Estimator: ``fn(est, log_rho, config) -> (advantages, value_targets)``, all ``[T, B, N]`` (or
``[T, B, K]``); ``est`` is :meth:`jaxseq.engine.Engine.returns_inputs` (rewards, values,
next_values, discounts, episode_ends) and ``log_rho`` ``[T, B, N]`` (or ``[T, B, 1]``) the log
joint ratio each agent's trace corrects for. ``off_policy`` says whether the estimate depends on
``log_rho`` at all (the simultaneous scheme then recomputes it before every epoch).

Objective: ``fn(log_ratio, unit, clip_eps, config) -> surrogate`` (a scalar to maximise), with
``log_ratio [..., K]`` the unit's agents' log pi_new - log pi_behaviour of the taken actions and
``unit`` the minibatch, each ``[..., K]`` (or broadcastable): ``advantages``, ``mask`` (alive and a
real unit member), and the optional inputs the scheme provides and the objective declares it reads
(:class:`~jaxseq.contracts.UnitInputs`): ``log_rho`` (the preceding joint log ratio, or
HAPPO's log factor; the sequential scheme), ``state_weights`` (OPSPO's; the sequential scheme) and
``log_mid`` (FP3O's scheme).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxseq import estimators, objectives, schemes
from jaxseq.contracts import Estimator, Objective, Scheme


def _gae(est, log_rho, cfg):
    adv = estimators.gae(**est, lam=cfg.gae_lambda)
    return adv, adv + est["values"]


def _preopc(est, log_rho, cfg):
    """A2PO Eq. 2; value target A + V."""
    adv = estimators.preopc(**est, lam=cfg.gae_lambda, log_rhos=log_rho)
    return adv, adv + est["values"]


def _vtrace(est, log_rho, cfg):
    """OPSPO Eq. 14-15: V-trace targets, advantage r + gamma v_{t+1} - V."""
    targets, adv = estimators.vtrace(
        **est, lam=cfg.gae_lambda, log_rhos=log_rho, clip_rho=cfg.vtrace_clip_rho, clip_c=cfg.vtrace_clip_c
    )
    return adv, targets


ESTIMATORS: dict[str, Estimator] = {
    "gae": Estimator(_gae, off_policy=False),
    "preopc": Estimator(_preopc, off_policy=True),
    "vtrace": Estimator(_vtrace, off_policy=True),
}


def _ppo(log_ratio, u, clip_eps, cfg):
    return objectives.ppo_clip_objective(log_ratio, u["advantages"], clip_eps, u["mask"])


def _coppo(log_ratio, u, clip_eps, cfg):
    """The unit is every agent at once (simultaneous scheme): each agent's others are the unit's
    other members, their joint ratio clipped to 1 +/- coppo_clip_others (0: clip_eps / 2)."""
    others = objectives.others_log_ratio(log_ratio, u["mask"])
    inner = jnp.where(cfg.coppo_clip_others > 0, cfg.coppo_clip_others, clip_eps / 2)  # may be traced (sweeps)
    return objectives.coppo_objective(log_ratio, others, u["advantages"], clip_eps, inner, u["mask"])


def _fp3o(log_ratio, u, clip_eps, cfg):
    return objectives.fp3o_objective(log_ratio, u["log_mid"], u["advantages"], clip_eps, u["mask"])


def _happo(log_ratio, u, clip_eps, cfg):
    return objectives.happo_objective(log_ratio, u["log_rho"], u["advantages"], clip_eps, u["mask"])


def _a2po(log_ratio, u, clip_eps, cfg):
    return objectives.a2po_objective(log_ratio, u["log_rho"], u["advantages"], clip_eps, u["mask"])


def _opspo(log_ratio, u, clip_eps, cfg):
    return objectives.opspo_objective(
        log_ratio, u["log_rho"], u["advantages"], u["state_weights"], clip_eps, cfg.opspo_eps2, cfg.opspo_crc, u["mask"]
    )


OBJECTIVES: dict[str, Objective] = {
    "ppo": Objective(_ppo),
    "coppo": Objective(_coppo),
    "fp3o": Objective(_fp3o, reads=("log_mid",)),
    "happo": Objective(_happo, reads=("log_rho",)),
    "a2po": Objective(_a2po, reads=("log_rho",)),
    "opspo": Objective(_opspo, reads=("log_rho", "state_weights")),
}

#: The update schemes by name (:mod:`jaxseq.schemes`).
SCHEMES: dict[str, Scheme] = {
    "simultaneous": Scheme(schemes.simultaneous),
    "sequential": Scheme(
        schemes.sequential,
        fields=("agent_blocks", "loop_order"),
        critic_per_unit=True,
        provides=("log_rho", "state_weights"),
    ),
    "fp3o": Scheme(schemes.fp3o, provides=("log_mid",)),
    "rpisa": Scheme(schemes.rpisa, init_extra=lambda n: {"stage_remaining": jnp.ones((n,), bool)}),
}

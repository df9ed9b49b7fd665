"""The actor update schemes, as functions of the :class:`~jaxseq.engine.Engine`.

Every scheme is ``run(engine, ts, data, est, key) -> (ts, targets, info)``: ``data`` the batch as
sequences (:meth:`Engine.training_data`), ``est`` the estimators' inputs
(:meth:`Engine.returns_inputs`), ``targets`` [T, B, N] the value targets the critic is fitted on
afterwards, ``info`` the scheme's metrics. Every actor update is a sequence of *units*: a set of
agents updated together by :meth:`Engine.fit_unit`; the schemes differ in how units are formed and
which ratio each is given.

- :func:`simultaneous` (MAPPO, IPPO, CoPPO, MAPPO w/ V-trace): one unit of every agent;
- :func:`sequential` (HAPPO, HAPPO w/ PreOPC, A2PO, OPSPO): a scan over agent blocks in an order;
- :func:`fp3o` (FP3O paper Alg. 2): an independence step and a dependence step of every agent;
- :func:`rpisa` (RPISA-PPO): one agent per update, each on a fresh rollout.

A scheme is registered by name in :data:`jaxseq.algorithms.components.SCHEMES` as a
:class:`~jaxseq.contracts.Scheme`, which may declare state of its own (``init_extra``), kept
in ``TrainState.extra``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxseq import objectives, ordering
from jaxseq.contracts import UnitInputs

if TYPE_CHECKING:
    from jaxseq.engine import Engine
    from jaxseq.types import TrainState

LOOP_ORDERS = ("agents-outer", "epochs-outer")
#: When the critic is fitted: "once" per update after the actors (the learner does it), or
#: "per-unit" inside a scheme that can (``Scheme.critic_per_unit``), after each unit.
CRITIC_FITS = ("once", "per-unit")


def unit_epochs(loop_order: str, epochs: int, units: int) -> tuple[int, int]:
    """(passes over the units, epochs each unit trains per pass): "agents-outer" one pass, every
    unit all ``epochs`` (A2PO Alg. 1, lines 4-12); "epochs-outer" ceil(epochs / units) passes of
    one epoch per unit (A2PO Alg. 2, lines 3-12)."""
    return (-(-epochs // units), 1) if loop_order == "epochs-outer" else (1, epochs)


def _no_rho(est: dict) -> jax.Array:
    """log rho = 0 for every agent, [T, B, 1]."""
    return jnp.zeros(est["values"].shape[:2] + (1,))


def simultaneous(eng: "Engine", ts: "TrainState", data: dict, est: dict, key: jax.Array):
    """Every agent at once (MAPPO, IPPO, CoPPO). With an off-policy estimator (V-trace) the
    advantages are recomputed before every epoch under the joint ratio of all agents' current
    policies (the correction of all agents that the A2PO paper's Sec. 5.2 ablates); the critic's
    targets are the last ones."""
    cfg, n = eng.config, eng.num_agents
    agents, valid = jnp.arange(n), jnp.ones((n,), bool)
    corrected = eng.algorithm.estimator.off_policy
    passes, epochs = (cfg.epochs, 1) if corrected else (1, cfg.epochs)

    def one_pass(carry, k):
        params, opt, _ = carry
        log_rho = (eng.log_ratio(params, data, agents, valid) if corrected else jnp.zeros(est["values"].shape[:2]))[
            ..., None
        ]
        adv, targets = eng.estimate(est, log_rho)
        params, opt, info = eng.fit_unit(params, opt, data, agents, valid, UnitInputs(adv, cfg.clip_eps), k, epochs)
        return (params, opt, targets), info

    init = (ts.actor_params, ts.actor_opt, jnp.zeros_like(est["values"]))
    (params, opt, targets), infos = jax.lax.scan(one_pass, init, jax.random.split(key, passes))
    return ts.replace(actor_params=params, actor_opt=opt), targets, jax.tree.map(jnp.mean, infos)


def sequential(eng: "Engine", ts: "TrainState", data: dict, est: dict, key: jax.Array):
    """The agent-by-agent actor update: a ``lax.scan`` over units (agent blocks) k = 0..U-1.

    Every agent's log ratio over the behaviour policy at the current parameters is carried from
    unit to unit (``current``, [T, B, N]): 0 at the start, where the actor is the behaviour policy
    (the batch is on-policy, :meth:`Trainer.learn`), and re-evaluated after each unit, for every
    agent under FuPS and PaPS (the unit moved the shared weights) and for the unit's agents under
    NoPS (no other agent's parameters changed): one forward pass of the batch per unit, whose last
    one also gives the reported joint ratio. Agent i's preceding joint ratio at a unit's start is
    rho_{-i} = prod_{j != i, j moved} pi^j / pi_b^j (A2PO Eq. 2 and 6 with pi-hat the current joint
    policy; OPSPO Eq. 14 and 20). "Moved" are the agents whose current policy may differ from
    the behaviour: under FuPS and PaPS every agent (any unit moves the shared weights); under
    NoPS the agents of the earlier units of this update, over all passes. So under NoPS and
    agents-outer rho_{-i} is the product over the preceding units; from Alg. 2's second pass
    on, and always under sharing, it covers every other agent (A2PO Alg. 2 line 7, App. B.1).
    The selection rule picks the unit's agents among those not yet updated in this pass, from
    E|A_i| with each agent's advantages under its own rho_{-i}; a block's unit agents see each
    other's ratio where those have moved. Each unit agent's advantages and value targets come from
    the estimator under its rho_{-i}; the unit's agents are updated together (their own
    optimiser states; the adaptive clip at each unit agent's position). With ``preceding =
    "incremental"`` (HAPPO) the surrogate takes HARL's factor instead: the product, over the
    units earlier in this pass, of each unit agent's ratio after its update over before it (equal
    to rho under NoPS).
    ``loop_order``: "agents-outer" runs every unit's epochs in one go (A2PO Alg. 1; HARL);
    "epochs-outer" makes ceil(epochs / U) passes over a fresh order, one epoch per unit (A2PO
    Alg. 2). With ``critic_fit = "per-unit"`` the critic is fitted after each unit, for as many
    epochs as the unit's actor, on the unit agents' value targets (A2PO Alg. 1-2 line 12, OPSPO
    Alg. 1 line 11), and the next unit's advantages and targets are computed with the refit critic
    (:meth:`Engine.refit_values`). Returns the state with the new actor (and critic), the value
    targets [T, B, N] and metrics.
    """
    n = eng.num_agents
    sizes = ordering.block_sizes(n, eng.config.agent_blocks)
    units = len(sizes)
    passes, epochs = unit_epochs(eng.config.loop_order, eng.config.epochs, units)
    k_density, key = jax.random.split(key)
    extra, weight_nets = eng.state_weights.begin(ts.extra, ts.actor_params, k_density)
    ts = ts.replace(extra=extra)
    alive, episode_starts = eng.unsequences(data["obs"].alive), eng.unsequences(data["start"])  # [T, B, N], [T, B]
    context = _UnitContext(eng, ts, data, est, max(sizes), epochs, alive, episode_starts)
    unit = functools.partial(_sequential_unit, context)
    zeros = jnp.zeros_like(est["values"])

    def one_pass(c: SequentialCarry, k):
        xs = (jnp.array([sum(sizes[:u]) for u in range(units)]), jnp.array(sizes), jax.random.split(k, units))
        # every agent remains to be picked in this pass; HAPPO's factor starts again at 1
        return jax.lax.scan(unit, c._replace(remaining=jnp.ones((n,), bool), log_factor=zeros[..., 0]), xs)

    moved = jnp.full((n,), eng.actor.sharing != "nops")  # under sharing every unit moves every agent's policy
    critic = (ts.critic_params, ts.critic_opt, ts.value_norm)
    fresh = (jnp.ones((n,), bool), zeros[..., 0])  # remaining, log_factor: set again by every pass
    init = SequentialCarry(ts.actor_params, ts.actor_opt, moved, zeros, zeros, weight_nets, *critic, *fresh)
    c, infos = jax.lax.scan(one_pass, init, jax.random.split(key, passes))
    ts = ts.replace(actor_params=c.params, actor_opt=c.opt)
    ts = ts.replace(critic_params=c.critic_params, critic_opt=c.critic_opt, value_norm=c.value_norm)
    return ts, c.targets, _sequential_metrics(eng, c.current, infos)


class _UnitContext(NamedTuple):
    """What every unit of one :func:`sequential` update reads: the engine, the state the update
    started from, the batch (sequences) and the estimators' inputs, the slots per unit, the epochs
    per unit, and the batch's alive flags [T, B, N] and episode starts [T, B]."""

    eng: "Engine"
    ts: "TrainState"
    data: dict
    est: dict
    width: int
    epochs: int
    alive: jax.Array
    episode_starts: jax.Array


def _sequential_unit(ctx: _UnitContext, c: "SequentialCarry", xs):
    """One unit of :func:`sequential`: ``xs`` = (its first position in the order, its size, a key)."""
    eng, ts, data, est = ctx.eng, ctx.ts, ctx.data, ctx.est
    alg, n, per_unit_critic = eng.algorithm, eng.num_agents, eng.config.critic_fit == "per-unit"
    start, size, k = xs
    k_pick, k_fit, k_weights = jax.random.split(k, 3)
    k_critic = jax.random.fold_in(k, 3)  # a key of its own, leaving the others as without the refit
    log_rho = objectives.others_log_ratio(c.current, c.moved)  # [T, B, N]: log rho_{-i}
    unit_critic = ts.replace(critic_params=c.critic_params, critic_opt=c.critic_opt, value_norm=c.value_norm)
    unit_est = eng.refit_values(est, unit_critic, data) if per_unit_critic else est
    adv_all, targets_all = eng.estimate(unit_est, log_rho)
    scores = eng.abs_advantage(adv_all, ctx.alive)
    agents, valid, remaining = ordering.pick_block(alg.order, start, size, ctx.width, scores, c.remaining, k_pick)
    in_unit = jnp.zeros((n,), bool).at[agents].max(valid)  # [N]: the unit agents
    unit_log_rho = log_rho[..., agents]  # [T, B, K]
    preceding = c.moved & ~in_unit  # the moved agents whose policies the state weights correct for
    weights, weight_nets, info_w = eng.state_weights.unit(
        ts.extra, c.weight_nets, unit_log_rho, ctx.episode_starts, ts.actor_params, c.params, preceding, k_weights
    )
    position, eps = _unit_clip(eng, start, ctx.width)
    incremental = alg.preceding == "incremental"
    given = c.log_factor[..., None] if incremental else unit_log_rho
    unit_adv = adv_all[..., agents]  # [T, B, K]: what the objective gets, as the trace records it
    inputs = UnitInputs(unit_adv, eps, log_rho=given, state_weights=weights)
    params, opt, info = eng.fit_unit(c.params, c.opt, data, agents, valid, inputs, k_fit, ctx.epochs)
    current, after = _refresh_ratios(eng, params, data, c.current, agents, eng.actor.sharing != "nops")
    log_factor = c.log_factor
    if incremental:  # HARL's factor: times each unit agent's ratio after its update over before it
        log_factor = log_factor + jnp.sum((after - c.current[..., agents]) * valid, axis=-1)
    critic = (c.critic_params, c.critic_opt, c.value_norm)
    if per_unit_critic:
        refit, info_c = eng.fit_critic(unit_critic, data, est["values"], targets_all, k_critic, ctx.epochs, in_unit)
        critic, info = (refit.critic_params, refit.critic_opt, refit.value_norm), {**info, **info_c}
    info.update(agents=agents, valid=valid, position=position, abs_adv=scores[agents], **info_w)
    info.update(state_weight_mean=weights.mean(), state_weight_min=weights.min())
    if eng.trace_units:
        info["trace"] = {
            **dict(params=c.params, moved=c.moved, log_rho=given, estimator_log_rho=log_rho, scores=scores),
            **dict(critic_params=c.critic_params, value_norm=c.value_norm, values=unit_est["values"]),
            **dict(advantages=unit_adv, clip=jnp.broadcast_to(eps, (ctx.width,)), weights=weights),
            "weight_nets": weight_nets,  # OPSPO's learned omega-nets after this unit's fit (else ())
        }
    targets = c.targets.at[..., agents].set(targets_all[..., agents])
    moved = c.moved | in_unit
    return SequentialCarry(params, opt, moved, current, targets, weight_nets, *critic, remaining, log_factor), info


class SequentialCarry(NamedTuple):
    """What :func:`sequential` carries from unit to unit (and from pass to pass)."""

    params: Any  #: the actor
    opt: Any  #: its optimiser state
    moved: jax.Array  #: [N] the agents whose current policy may differ from the behaviour
    current: jax.Array  #: [T, B, N] every agent's log ratio over the behaviour at ``params``
    targets: jax.Array  #: [T, B, N] value targets, each agent's from its latest unit
    weight_nets: Any  #: OPSPO's learned omega-nets (() for the other state weights)
    critic_params: Any  #: the critic: refit after each unit with ``critic_fit = "per-unit"``
    critic_opt: Any
    value_norm: Any
    remaining: jax.Array  #: [N] the agents not yet picked in this pass
    log_factor: jax.Array  #: [T, B] HAPPO's log factor over this pass's earlier units


def _unit_clip(eng: "Engine", start, width: int):
    """The 0-based positions [K] of a unit's slots in the order, and each slot's clip: A2PO's
    C(eps, k) at its position with adaptive clipping, else ``clip_eps``."""
    cfg = eng.config
    position = start + jnp.arange(width)
    if eng.algorithm.adaptive_clip:
        return position, ordering.adaptive_clip(cfg.clip_eps, position + 1, eng.num_agents, cfg.clip_c)
    return position, cfg.clip_eps


def _refresh_ratios(eng: "Engine", params, data: dict, current: jax.Array, agents: jax.Array, shared: bool):
    """After a unit: every agent's log ratio over the behaviour at the new ``params`` ([T, B, N];
    under FuPS and PaPS all re-evaluated, the unit moved the shared weights; under NoPS only the
    unit agents', the others' unchanged from ``current``), and the unit agents' ([T, B, K])."""
    if shared:
        after_all = eng.agent_log_ratios(params, data, jnp.arange(eng.num_agents))
        return after_all, after_all[..., agents]
    after = eng.agent_log_ratios(params, data, agents)
    return current.at[..., agents].set(after), after  # padding slots repeat a unit agent's value


def _sequential_metrics(eng: "Engine", log_ratios: jax.Array, infos: dict) -> dict:
    """Means over passes and units, the final joint ratio (``log_ratios`` [T, B, N]: every agent's
    log ratio at the final parameters), and per-agent diagnostics [N]."""
    n = eng.num_agents
    trace = infos.pop("trace", None)
    agents, valid = infos.pop("agents"), infos.pop("valid")  # [P, U, K]
    metrics = {k: v.mean() for k, v in infos.items() if k not in ("position", "abs_adv")}
    # The joint ratio after the last unit: the whole new joint policy over the behaviour one.
    rho = jnp.exp(jnp.sum(log_ratios, axis=-1))
    metrics.update(preceding_ratio_mean=rho.mean(), preceding_ratio_std=rho.std(), preceding_ratio_max=rho.max())
    # Per-agent diagnostics, [N] indexed by agent id, averaged over passes: its position in the
    # order, its unit's clip fraction, KL and TV estimates, and E|A_i| when it was picked.
    per_agent = {"position": infos["position"], "abs_adv": infos["abs_adv"]}
    per_agent.update({k: jnp.broadcast_to(infos[k][..., None], agents.shape) for k in ("clip_frac", "approx_kl", "tv")})
    weight = valid.astype(jnp.float32).ravel()
    count = jnp.zeros(n).at[agents.ravel()].add(weight)
    metrics.update(
        {f"agent_{k}": jnp.zeros(n).at[agents.ravel()].add(v.ravel() * weight) / count for k, v in per_agent.items()}
    )
    if trace is not None:
        metrics["trace"] = {**trace, "agents": agents, "valid": valid}
    return metrics


def fp3o(eng: "Engine", ts: "TrainState", data: dict, est: dict, key: jax.Array):
    """FP3O (FP3O paper Alg. 2, Eq. 9-10): every agent in one unit, twice, GAE advantages.

    Independence step: ``epochs`` epochs of PPO-clip (Eq. 9) for every agent in parallel, from the
    old parameters -> the middle parameters. Dependence step: from the middle parameters and the
    optimiser state, ``epochs`` more epochs of Eq. 10 (:func:`objectives.fp3o_objective`), agent j
    with R_j = the other agents' middle ratios, computed once after the independence step (both
    steps run ``epochs``, as the public code's two stages each run ppo_epoch; the critic is
    fitted once, after the actors). The paper's non-overlapping map assigns agent j_p to
    pipeline p; since R_j covers every k != j whichever pipeline selected j, the update does not
    depend on it, and it is not drawn here. With ``fp3o_guard`` the
    dependence step is skipped (the middle parameters kept) when :func:`objectives.fp3o_guard`
    fails. With one agent R = 1: PPO-clip for 2 x ``epochs`` epochs (tested).
    """
    cfg, n = eng.config, eng.num_agents
    agents, valid = jnp.arange(n), jnp.ones((n,), bool)
    k_ind, k_dep = jax.random.split(key)
    no_rho = _no_rho(est)
    adv, targets = eng.estimate(est, no_rho)

    def step(params, opt, log_mid, k):
        return eng.fit_unit(
            params, opt, data, agents, valid, UnitInputs(adv, cfg.clip_eps, log_mid=log_mid), k, cfg.epochs
        )

    mid, mid_opt, info_ind = step(ts.actor_params, ts.actor_opt, jnp.zeros_like(adv), k_ind)
    log_mid = eng.agent_log_ratios(mid, data, agents)  # [T, B, N], fixed for the dependence step
    params, opt, info_dep = step(mid, mid_opt, log_mid, k_dep)
    mask = eng.mask(eng.unsequences(data["obs"].alive))
    guard = objectives.fp3o_guard(log_mid, eng.normalize_advantages(adv, mask), mask)
    proceed = guard if cfg.fp3o_guard else jnp.bool_(True)
    params, opt = jax.tree.map(lambda new, old: jnp.where(proceed, new, old), (params, opt), (mid, mid_opt))
    info = jax.tree.map(lambda a, b: jnp.where(proceed, (a + b) / 2, a), info_ind, info_dep)
    joint_mid = jnp.exp(jnp.sum(log_mid * mask, axis=-1))
    info.update(
        fp3o_guard_pass=guard.astype(jnp.float32), middle_ratio_mean=joint_mid.mean(), middle_ratio_std=joint_mid.std()
    )
    if eng.trace_units:
        info["trace"] = {"params": mid, "log_mid": log_mid}
    return ts.replace(actor_params=params, actor_opt=opt), targets, info


def rpisa(eng: "Engine", ts: "TrainState", data: dict, est: dict, key: jax.Array):
    """RPISA-PPO: this update's fresh batch serves one agent, the next in this stage's order
    (a stage spans N updates, so N rollouts; ``extra["stage_remaining"]`` [N] the agents not yet
    updated in it); PPO-clip on that agent only, GAE advantages; the critic is fitted on every
    agent's targets of every batch."""
    cfg, n = eng.config, eng.num_agents
    k_pick, k_fit = jax.random.split(key)
    stage = ts.extra["stage_remaining"]
    remaining = jnp.where(stage.any(), stage, True)
    no_rho = _no_rho(est)
    adv, targets = eng.estimate(est, no_rho)
    scores = eng.abs_advantage(adv, eng.unsequences(data["obs"].alive))
    agents, valid, remaining = ordering.pick_block(
        eng.algorithm.order, n - remaining.sum(), 1, 1, scores, remaining, k_pick
    )
    inputs = UnitInputs(adv[..., agents], cfg.clip_eps)
    params, opt, info = eng.fit_unit(ts.actor_params, ts.actor_opt, data, agents, valid, inputs, k_fit, cfg.epochs)
    extra = {**ts.extra, "stage_remaining": remaining}
    return ts.replace(actor_params=params, actor_opt=opt, extra=extra), targets, info

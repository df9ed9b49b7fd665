"""Conformance: the ratios each update unit is given, and what the unit does with them, recomputed
from scratch.

For every sequential algorithm x sharing mode x loop order (with discrete and continuous actions,
MLP and GRU, agent blocks spread over the cases), several agents and a learning rate large enough
to move every policy, one update runs with the trainer's ``trace_units`` hook, which records the
parameters each unit started from and the log ratio it was given. The test then recomputes, from
those parameters alone, each agent's log-probabilities (the network applied step by step, the
log-density written out in NumPy) and the documented reading (docs/design.md, "The preceding
ratio"):

- A2PO, OPSPO, HAPPO w/ PreOPC's estimator: member i of a unit gets log rho_{-i} = sum over the
  agents j != i that have moved (every agent under FuPS / PaPS; under NoPS those of earlier units of
  this update, over all passes) of log pi_theta(a_j) - log pi_b(a_j), theta the unit's start;
- HAPPO and HAPPO w/ PreOPC's surrogate: HARL's factor, the sum over the earlier units of this pass
  of each member's log-prob after its unit minus before it;
- the joint ratio reported after the last unit (``preceding_ratio_mean``): the final parameters'
  joint ratio over the behaviour policy;
- FP3O: R_j's middle log ratios recomputed from the middle parameters, in every sharing mode.

Past the ratio (issue 27), from what each unit recorded and NumPy loops written from the papers:
every agent's advantages under its own rho_{-i} (GAE, PreOPC, V-trace), the selection scores
E|A_i| and the picks (greedy positions take the largest remaining score), each member's clip
(A2PO's C(eps, k) at its position), OPSPO's step-wise weighted IS state weights under sharing and
its learned omega-net weights under NoPS (the nets applied in NumPy from the parameters each unit
recorded), and with ``critic_fit = "per-unit"`` the critic each unit's values came from (one case
per sharing mode). One SMAX case has agents dying within the batch. Checked once by mutation: an
adaptive clip one position off, argmin for argmax in the greedy rule, the refit disabled and the
advantages' agent column shifted each fail here; so do (2026-12-06) the learned weights' two
omega-nets swapped (2 of 2 OPSPO NoPS cases) and selection scores that count dead agents' samples
(the SMAX case). The traced advantages are the
ones the unit's objective receives (one variable): with the column shifted only in what the
objective got, the trace used to show the right column and 24 of 24 cases passed; now 12 of 12
checked fail (2026-12-06). With the per-unit refit disabled, 3 of 3 per-unit cases fail.
"""

import math

import jax
import numpy as np
import pytest

from jaxseq.objectives import others_log_ratio
from jaxseq.train import make_train

from support.helpers import BASE, FP3O_CASES, SHARING, case_label, sequential_cases, tiny, traced_params, update_configs
from support.helpers import traced_update as _traced_update
from test_estimators import numpy_gae, numpy_preopc, numpy_vtrace

_APPLY = {}  # the jitted actor of each traced trainer (they live on in _traced_update's cache)


def _log_probs(trainer, params, batch) -> np.ndarray:
    """log pi_params(a_j | o_j) of every agent's taken action, [T, B, N], from scratch: the actor
    applied step by step (recurrent state restarted from the stored carry at each training sequence's
    first step, as the update replays it) and the log-density written out in NumPy."""
    apply = _APPLY.setdefault(id(trainer), jax.jit(trainer.actor.apply))
    T, n, L = batch.start.shape[0], trainer.env.spec.num_agents, trainer.config.sequence_length
    carry, outs = None, []
    for t in range(T):
        if t % L == 0:
            carry = batch.actor_carry[t]
        start = np.broadcast_to(np.asarray(batch.start[t])[:, None], batch.start.shape[1:] + (n,))
        carry, out = apply(params, carry, batch.obs.obs[t], start)
        outs.append(np.asarray(out, np.float64))
    out, avail, actions = np.stack(outs), np.asarray(batch.obs.avail), np.asarray(batch.actions)
    if trainer.env.spec.continuous:
        mean, log_std = np.split(out, 2, axis=-1)
        log_std = np.clip(log_std, -20.0, 2.0)
        per_dim = -0.5 * ((actions - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
        return np.sum(np.where(avail, per_dim, 0.0), axis=-1)  # the joint density of the dimensions
    logits = np.where(avail, out, -1e9)
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return np.take_along_axis(logp, actions[..., None], axis=-1)[..., 0]


def _cases():
    return traced_params(list(update_configs())[: len(sequential_cases())], sequential_cases())


@pytest.mark.parametrize("algo, sharing, loop_order, extra", _cases())
def test_each_unit_gets_the_ratio_recomputed_from_the_parameters_it_starts_from(algo, sharing, loop_order, extra):
    cfg = tiny(**{**BASE, "algo": algo, "sharing": sharing, "loop_order": loop_order, **extra})
    trainer, batch, metrics, final, _ = _traced_update(cfg)
    trace = metrics["trace"]
    agents, valid = trace["agents"], trace["valid"]  # [P, U, K]
    passes, units, _ = agents.shape
    n = trainer.env.spec.num_agents
    behaviour = np.asarray(batch.log_probs, np.float64)
    unit_params = lambda p, u: jax.tree.map(lambda x: x[p, u], trace["params"])  # noqa: E731
    log_ratios = {
        (p, u): _log_probs(trainer, unit_params(p, u), batch) - behaviour for p in range(passes) for u in range(units)
    }
    log_final = _log_probs(trainer, final, batch) - behaviour
    if cfg.env.startswith("smax"):  # the dead-agent case: some agents die within the batch
        alive = np.asarray(batch.obs.alive)
        assert alive.any() and not alive.all(), "no agent died in the batch: the case would not test dead agents"
    moved = np.full(n, sharing != "nops")
    incremental = algo in ("happo", "happo_preopc")
    largest = 0.0
    for p in range(passes):
        factor = np.zeros(behaviour.shape[:2])
        for u in range(units):
            np.testing.assert_array_equal(trace["moved"][p, u], moved)
            given = trace["log_rho"][p, u]  # [T, B, K] (HAPPO: [T, B, 1])
            members = agents[p, u][valid[p, u]]
            if incremental:
                np.testing.assert_allclose(given[..., 0], factor, atol=2e-4, err_msg=f"factor, pass {p} unit {u}")
                after = (
                    log_ratios[p, u + 1] if u + 1 < units else (log_ratios[p + 1, 0] if p + 1 < passes else log_final)
                )
                factor = factor + (after - log_ratios[p, u])[..., members].sum(-1)
            else:
                for slot in np.flatnonzero(valid[p, u]):
                    i = agents[p, u, slot]
                    others = moved & (np.arange(n) != i)
                    want = (log_ratios[p, u] * others).sum(-1)
                    np.testing.assert_allclose(
                        given[..., slot], want, atol=2e-4, err_msg=f"pass {p} unit {u} agent {i}"
                    )
                    largest = max(largest, float(np.abs(want).max()))
            moved[members] = True
    if not incremental:
        assert largest > 1e-2, "the policies barely moved: the check would not tell the readings apart"
    # The reported joint ratio: the final joint policy over the behaviour, from scratch.
    np.testing.assert_allclose(metrics["preceding_ratio_mean"], np.exp(log_final.sum(-1)).mean(), rtol=2e-4)


@pytest.mark.parametrize("sharing", SHARING)
def test_happo_factor_is_harls_incremental_one_and_differs_from_the_joint_ratio_under_sharing(sharing):
    """Under NoPS HARL's factor is the preceding agents' ratio over the behaviour policy; under
    sharing the earlier units' agents move again, and the factor is not that ratio."""
    trainer, batch, metrics, _, _ = _traced_update(tiny(**{**BASE, "algo": "happo", "sharing": sharing}))
    trace = metrics["trace"]
    behaviour = np.asarray(batch.log_probs, np.float64)
    last = jax.tree.map(lambda x: x[0, -1], trace["params"])  # the last unit's start
    earlier = trace["agents"][0, :-1, 0]
    joint = (_log_probs(trainer, last, batch) - behaviour)[..., earlier].sum(-1)
    gap = np.abs(trace["log_rho"][0, -1][..., 0] - joint).max()
    if sharing == "nops":
        assert gap < 2e-4, gap
    else:
        assert gap > 1e-3, gap


@pytest.mark.parametrize("sharing, extra", FP3O_CASES, ids=[case_label("fp3o", s, extra=e) for s, e in FP3O_CASES])
def test_fp3o_middle_ratios_are_recomputed_from_the_middle_parameters(sharing, extra):
    trainer, batch, metrics, _, _ = _traced_update(tiny(**{**BASE, "algo": "fp3o", "sharing": sharing, **extra}))
    log_mid = _log_probs(trainer, metrics["trace"]["params"], batch) - np.asarray(batch.log_probs, np.float64)
    given = metrics["trace"]["log_mid"]
    np.testing.assert_allclose(given, log_mid, atol=2e-4)
    assert np.abs(log_mid).max() > 1e-2
    # R_j = prod_{k != j} r_mid^k, as the dependence step forms it from the middle log ratios.
    R = np.exp(np.asarray(others_log_ratio(given, np.ones(log_mid.shape[-1]))))
    np.testing.assert_allclose(R, np.exp(log_mid.sum(-1, keepdims=True) - log_mid), rtol=5e-4)


def test_every_algorithm_and_preset_uses_the_joint_density_ratio_of_continuous_actions():
    """An agent's ratio with several action dimensions is exp of the summed per-dimension log ratios,
    for every algorithm (each builds its policy from the config) and every preset."""
    from scipy import stats

    from jaxseq.algorithms import ALGORITHMS
    from jaxseq.configure import make_config
    from jaxseq.presets import PRESETS

    assert all(make_config(name).log_prob_reduce == "sum" for name in PRESETS)
    rng = np.random.default_rng(0)
    mean, log_std, shift = rng.uniform(-0.9, 0.9, (3, 4, 5))
    actions = rng.normal(size=(4, 5))
    new, old = np.concatenate([mean + shift, log_std], -1), np.concatenate([mean, log_std], -1)
    want = np.exp(
        (
            stats.norm.logpdf(actions, mean + shift, np.exp(log_std))
            - stats.norm.logpdf(actions, mean, np.exp(log_std))
        ).sum(-1)
    )
    avail = np.ones((4, 5), bool)
    for algo in ALGORITHMS:
        policy = make_train(tiny(algo=algo, env="mpe:spread?actions=continuous")).policy
        ratio = np.exp(policy.log_prob(new, avail, actions) - policy.log_prob(old, avail, actions))
        np.testing.assert_allclose(ratio, want, rtol=1e-4, err_msg=algo)


#: Per-unit critic cases (A2PO Alg. 1-2 line 12, OPSPO Alg. 1 line 11), one per sharing mode:
#: Algorithm 2 under FuPS as the SMAX presets run it, a V-trace case under PaPS, and agent blocks
#: under NoPS and agents-outer. Each compiles a
#: program of its own, so the last two run with -m slow (the suite's budget).
PER_UNIT_CASES = (
    ("a2po", "fups", "epochs-outer", {"network": "gru"}),
    ("opspo", "paps", "agents-outer", {"env": "mpe:spread?actions=continuous"}),
    ("happo_preopc", "nops", "agents-outer", {"env": "mpe:spread?n=4", "agent_blocks": 2}),
)
_SLOW_PER_UNIT = ("opspo", "happo_preopc")


def _denormalize(value_norm, x):
    """MAPPO's ValueNorm written out: debiased running mean and variance (floored at 1e-2)."""
    debias = max(float(value_norm.debias), 1e-5)
    mean = float(value_norm.mean) / debias
    var = max(float(value_norm.mean_sq) / debias - mean**2, 1e-2)
    return x * math.sqrt(var) + mean


def _critic_values(trainer, params, batch, ts):
    """The critic's outputs [T, B, N] over the batch applied step by step (carries restarted from the
    stored ones at each training sequence's first step), and on ``ts.obs`` after the last step [B, N]."""
    apply = jax.jit(trainer.critic.apply)
    cfg, n = trainer.config, trainer.env.spec.num_agents

    def inputs(obs):
        x = np.asarray(obs.state if trainer.algorithm.critic_input == "state" else obs.obs)
        return np.where(np.asarray(obs.alive)[..., None], x, 0.0) if cfg.death_mask else x

    carry, outs = None, []
    for t in range(batch.start.shape[0]):
        if t % cfg.sequence_length == 0:
            carry = batch.critic_carry[t]
        obs_t = jax.tree.map(lambda x: x[t], batch.obs)
        start = np.broadcast_to(np.asarray(batch.start[t])[:, None], batch.start.shape[1:] + (n,))
        carry, out = apply(params, carry, inputs(obs_t), start)
        outs.append(np.asarray(out[..., 0], np.float64))
    no_start = np.zeros(ts.start.shape + (n,), bool)
    last = np.asarray(apply(params, ts.critic_carry, inputs(ts.obs), no_start)[1][..., 0], np.float64)
    return np.stack(outs), last


@pytest.mark.parametrize(
    "algo, sharing, loop_order, extra",
    [
        pytest.param(*c, id=case_label(*c[:3], extra=c[3]), marks=pytest.mark.slow if c[0] in _SLOW_PER_UNIT else ())
        for c in PER_UNIT_CASES
    ],
)
def test_each_units_advantages_come_from_the_critic_refit_after_the_unit_before(algo, sharing, loop_order, extra):
    """With ``critic_fit = "per-unit"``: each unit's values are the critic it started from (the
    one refit after the unit before), recomputed from its recorded parameters and normaliser, and
    its members' advantages are the paper's estimator (NumPy loops) under the ratio it was given."""
    cfg = tiny(
        **{**BASE, "algo": algo, "sharing": sharing, "loop_order": loop_order, "critic_fit": "per-unit", **extra}
    )
    trainer, batch, metrics, _, _ = _traced_update(cfg)
    trace = metrics["trace"]
    ts = jax.tree.map(lambda x: x[0], trainer.init(jax.random.PRNGKey(1)))  # the state the update was given
    terminated = np.broadcast_to(np.asarray(batch.terminated)[..., None], batch.rewards.shape)
    ends = terminated | np.asarray(batch.truncated)[..., None]
    discounts = cfg.gamma * (1.0 - terminated)
    rollout_next = _denormalize(ts.value_norm, np.asarray(batch.next_value_preds, np.float64))
    agents, valid = trace["agents"], trace["valid"]
    first = None
    for p, u in np.ndindex(agents.shape[:2]):
        value_norm = jax.tree.map(lambda x: x[p, u], trace["value_norm"])
        out, last = _critic_values(trainer, jax.tree.map(lambda x: x[p, u], trace["critic_params"]), batch, ts)
        values, last = _denormalize(value_norm, out), _denormalize(value_norm, last)
        following = np.concatenate([values[1:], last[None]])
        next_values = np.where(ends & (discounts > 0), rollout_next, following)  # truncated: the rollout's
        np.testing.assert_allclose(trace["values"][p, u], values, atol=2e-4, err_msg=f"values, pass {p} unit {u}")
        first = values if first is None else first
        for slot in np.flatnonzero(valid[p, u]):
            i = agents[p, u, slot]
            given = np.asarray(trace["estimator_log_rho"][p, u][..., i], np.float64)  # HAPPO's factor aside
            args = (batch.rewards[..., i], values[..., i], next_values[..., i], discounts[..., i], ends[..., i])
            if algo == "opspo":
                rho, c = cfg.vtrace_clip_rho, cfg.vtrace_clip_c
                _, want = numpy_vtrace(*args, cfg.gae_lambda, given, clip_rho=rho, clip_c=c)
            else:
                want = numpy_preopc(*args, cfg.gae_lambda, given)
            np.testing.assert_allclose(
                trace["advantages"][p, u][..., slot],
                want,
                atol=5e-4,
                err_msg=f"advantages, pass {p} unit {u} agent {i}",
            )
    # The critic moved between the first unit and the last: the check tells a refit from none.
    assert np.abs(values - first).max() > 1e-2


def _numpy_omega(params, states):
    """OPSPO's omega-net (``jaxseq.density.RatioMLP``, positive) written out: two tanh layers, then
    softplus(x + log(e - 1)), so that a zero pre-activation gives 1. ``states`` [..., D] -> [...]."""
    layers = params["params"]
    x = states
    for name in ("Dense_0", "Dense_1"):
        x = np.tanh(x @ np.asarray(layers[name]["kernel"], np.float64) + np.asarray(layers[name]["bias"]))
    out = (x @ np.asarray(layers["Dense_2"]["kernel"], np.float64) + np.asarray(layers["Dense_2"]["bias"]))[..., 0]
    return np.logaddexp(0.0, out + math.log(math.e - 1.0))


def _numpy_weighted_is(log_rho, starts):
    """Step-wise weighted IS (OPSPO App. B.2, the reading in docs/design.md) as a loop: w_b(t) the
    product of env b's joint ratios over its episode's steps before t, over its mean across envs."""
    w = np.ones_like(log_rho)
    for b in range(log_rho.shape[1]):
        log_w = 0.0
        for t in range(log_rho.shape[0]):
            log_w = 0.0 if starts[t, b] else log_w
            w[t, b] = math.exp(log_w)
            log_w += log_rho[t, b]
    return w / w.mean(axis=1, keepdims=True)


@pytest.mark.parametrize("algo, sharing, loop_order, extra", _cases())
def test_each_units_estimates_picks_clips_and_state_weights_are_recomputed(algo, sharing, loop_order, extra):
    """Past the ratio, per unit (the once-per-update critic): the values are the rollout's; every
    agent's advantages under its own rho_{-i} are the paper's estimator (NumPy loops: GAE, PreOPC,
    V-trace) and E|A_i| over its live samples is the selection score; a greedy position picks the
    remaining agent with the largest score and every pick is a remaining agent; each member's clip is
    A2PO's C(eps, k) at its position k (eps elsewhere); OPSPO's state weights under sharing are
    min(step-wise weighted IS, 1) of the member's rho_{-i}."""
    from jaxseq.ordering import block_sizes

    cfg = tiny(**{**BASE, "algo": algo, "sharing": sharing, "loop_order": loop_order, **extra})
    trainer, batch, metrics, _, _ = _traced_update(cfg)
    trace, n = metrics["trace"], trainer.env.spec.num_agents
    value_norm = jax.tree.map(lambda x: x[0, 0], trace["value_norm"])  # the update's: one critic fit, after the units
    terminated = np.broadcast_to(np.asarray(batch.terminated)[..., None], batch.rewards.shape)
    ends = terminated | np.asarray(batch.truncated)[..., None]
    discounts = cfg.gamma * (1.0 - terminated)
    values = _denormalize(value_norm, np.asarray(batch.value_preds, np.float64))
    next_values = _denormalize(value_norm, np.asarray(batch.next_value_preds, np.float64))
    alive = np.asarray(batch.obs.alive, np.float64)
    rule = {"a2po": cfg.selection_rule, "opspo": cfg.selection_rule}.get(algo, "random")
    sizes = block_sizes(n, cfg.agent_blocks)
    agents, valid = trace["agents"], trace["valid"]
    below_one = 0  # learned state weights below 1 (OPSPO under NoPS)
    for p in range(agents.shape[0]):
        remaining = set(range(n))
        for u in range(agents.shape[1]):
            np.testing.assert_allclose(trace["values"][p, u], values, atol=2e-4, err_msg=f"values, unit {u}")
            log_rho = np.asarray(trace["estimator_log_rho"][p, u], np.float64)  # [T, B, N]
            adv = np.zeros_like(values)
            for i in range(n):
                args = (batch.rewards[..., i], values[..., i], next_values[..., i], discounts[..., i], ends[..., i])
                if algo == "happo":
                    adv[..., i] = numpy_gae(*args, cfg.gae_lambda)
                elif algo == "opspo":
                    rho, c = cfg.vtrace_clip_rho, cfg.vtrace_clip_c
                    adv[..., i] = numpy_vtrace(*args, cfg.gae_lambda, log_rho[..., i], clip_rho=rho, clip_c=c)[1]
                else:
                    adv[..., i] = numpy_preopc(*args, cfg.gae_lambda, log_rho[..., i])
            scores = (np.abs(adv) * alive).sum((0, 1)) / np.maximum(alive.sum((0, 1)), 1)
            np.testing.assert_allclose(trace["scores"][p, u], scores, rtol=1e-3, atol=1e-4, err_msg=f"scores, unit {u}")
            for slot in np.flatnonzero(valid[p, u]):
                i, k = int(agents[p, u, slot]), sum(sizes[:u]) + slot  # k: the 0-based position in the order
                got = trace["advantages"][p, u][..., slot]
                np.testing.assert_allclose(got, adv[..., i], atol=5e-4, err_msg=f"advantages, unit {u} agent {i}")
                assert i in remaining, (u, i, remaining)
                if rule == "greedy" or (rule == "semi-greedy" and k % 2 == 0):
                    assert i == max(remaining, key=lambda j: scores[j]), (u, i, scores)
                remaining.discard(i)
                adaptive = algo == "a2po" and cfg.adaptive_clip
                eps = cfg.clip_eps * (cfg.clip_c + (1 - cfg.clip_c) * (k + 1) / n) if adaptive else cfg.clip_eps
                np.testing.assert_allclose(trace["clip"][p, u][slot], eps, rtol=1e-6, err_msg=f"clip, agent {i}")
                weights = trace["weights"][p, u]
                if algo == "opspo" and sharing != "nops":  # step-wise weighted IS
                    want = np.minimum(_numpy_weighted_is(log_rho[..., i], np.asarray(batch.start)), 1.0)
                    np.testing.assert_allclose(weights[..., slot], want, rtol=1e-4, err_msg=f"weights, agent {i}")
                elif algo != "opspo":
                    np.testing.assert_array_equal(weights, 1.0)
            if algo == "opspo" and sharing == "nops":
                below_one += _check_learned_state_weights(trace, p, u, np.asarray(batch.obs.state[:, :, 0], np.float64))
        assert not remaining  # every agent was picked once in the pass
    if algo == "opspo" and sharing == "nops":
        assert below_one > 0, "every learned weight was 1: the check would not tell a weighting from none"


def _check_learned_state_weights(trace, p, u, states) -> int:
    """OPSPO under NoPS (learned omega-nets, OPSPO Alg. 1-2): unit (p, u)'s state weights are
    min((omega^{i-1}(s) / scale^{i-1}) / (omega_k(s) / scale_k), 1) on the batch's states ``states``
    [T, B, D] (agent 0's), the omega-nets applied in NumPy from the parameters the unit recorded;
    omega_k (the behaviour's, fitted once per update) is the same in every unit; ones while no
    earlier unit's agent has moved (the preceding policy is the behaviour). Returns how many
    weights are below 1."""
    (behaviour, scale_k), (preceding, scale_p) = jax.tree.map(lambda x: x[p, u], trace["weight_nets"])
    (first, _), _ = jax.tree.map(lambda x: x[0, 0], trace["weight_nets"])
    for a, b in zip(jax.tree.leaves(behaviour), jax.tree.leaves(first)):
        np.testing.assert_array_equal(a, b, err_msg="omega_k changed between units")
    members = np.zeros_like(trace["moved"][p, u])
    members[trace["agents"][p, u][trace["valid"][p, u]]] = True
    weights = trace["weights"][p, u][..., 0]  # one column: the unit's preceding policy's states
    if not (trace["moved"][p, u] & ~members).any():
        np.testing.assert_array_equal(weights, 1.0, err_msg=f"unit {u} of pass {p}: no agent has moved")
        return 0
    ratio = (_numpy_omega(preceding.omega, states) / scale_p) / (_numpy_omega(behaviour.omega, states) / scale_k)
    want = np.minimum(ratio, 1.0)
    np.testing.assert_allclose(weights, want, rtol=1e-4, err_msg=f"learned weights, pass {p} unit {u}")
    return int((want < 1.0 - 1e-6).sum())

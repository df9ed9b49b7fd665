"""How often does one agent's update improve J? Exact agent-by-agent updates in random tabular games.

A2PO paper Prop. 1 says an agent that maximises a surrogate built on the behaviour policy's advantage
A^pi can lose J however well its own step is constrained (the preceding agents' changes enter as an
uncontrollable term); Thm. 1 says that with the preceding joint policy's advantage A^{pi_hat^{i-1}}
(what PreOPC estimates) the single-agent bound is controlled by the agent's own step. This script
measures both with no sampling error at all.

One *stage*: a random game (``jaxseq.envs.tabular.make_game``, S states, A actions, n agents), a
random softmax tabular behaviour policy pi (logits ~ N(0, init_scale^2)) and a random order. The
agents update one after another from pi_hat^0 = pi; agent i at position k (1..n) runs ``steps``
steps of gradient ascent (step size ``lr``) on its own logits, starting from pi_i, on an exact
surrogate: an expectation over s ~ d^pi, a ~ pi (the behaviour data), computed with the library's
own objectives by passing the weights d^pi(s) pi(a|s) as the mask of ``masked_mean``. Variants:

- ``happo``: ``happo_objective``: E[M min(r_i A^pi, clip(r_i, 1 +/- eps) A^pi)], M = product of the
  preceding agents' ratios pi_hat_j / pi_j (unclipped, no gradient);
- ``a2po``: ``a2po_objective``: E[min(l A, clip(l, 1 +/- eps_k) A)], l = r_i clip(rho, 1 +/- eps_k / 2),
  rho the preceding joint ratio, A = the *exact* A^{pi_hat^{i-1}} (PreOPC's target, no estimation
  error), eps_k = C(eps, k) = eps (0.5 + 0.5 k / n) (``jaxseq.ordering.adaptive_clip``);
- ``a2po-preopc``: as ``a2po`` with A = the exact expectation of the PreOPC estimator
  (``preopc_expectation``, lambda = ``lam``, critic V = V^pi): what PreOPC would give with
  unlimited data, truncation bias included;
- ``a2po-uncorrected``: as ``a2po`` with A = A^pi (Prop. 1's intuitive surrogate with A2PO's clipping):
  isolates the advantage correction;
- ``a2po-unclipped-rho``: a diagnostic, not an algorithm of the papers: ``ppo_clip_objective`` on
  the ratio r_i rho with rho *unclipped* and the exact A^{pi_hat^{i-1}}, eps_k: isolates the clip
  of the preceding agents' ratio at 1 +/- eps_k / 2.

Recorded, exactly (float64 linear solves): for each single-agent update whether
J(pi_hat^i) > J(pi_hat^{i-1}); for each stage whether J(pi_hat^n) > J(pi). And the two bounds'
left-hand sides, at positions k >= 2 (at k = 1 they coincide), along each variant's own updates:
|J(pi_hat^i) - L^I(pi_hat^i)| of Prop. 1, L^I = J(pi_hat^{i-1}) + E_{d^pi, pi_hat^i}[A^pi] / (1 - gamma),
and |J(pi_hat^i) - L(pi_hat^i)| of Thm. 1, L = J(pi_hat^{i-1}) + E_{d^pi, pi_hat^i}[A^{pi_hat^{i-1}}] / (1 - gamma)
with the exact A^{pi_hat^{i-1}} (xi_i = 0); also |dJ - (L^I(pi_hat^i) - L^I(pi_hat^{i-1}))|: L^I
less its offset O_pi(pi_hat^{i-1}) (the preceding agents' first-order gain), which does not depend on
agent i's policy and so does not change the maximiser. Frequencies are means
over stages (an agent-update rate is the mean over stages of the fraction of that stage's n
updates that improved J) with standard errors across stages, which are independent. Every variant
sees the same stages (paired comparison).

    python benchmarks/tabular_improvement.py                       # the table in benchmarks/results/
    python benchmarks/tabular_improvement.py --stages 4 --agents 2 --no-save --json out.json
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxseq.envs.tabular import joint_action_table, make_game
from jaxseq.envs.tabular_exact import agent_log_probs, evaluate, preopc_expectation
from jaxseq.objectives import a2po_objective, happo_objective, ppo_clip_objective
from jaxseq.ordering import adaptive_clip

VARIANTS = ("happo", "a2po", "a2po-preopc", "a2po-uncorrected", "a2po-unclipped-rho")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    return np.log(_softmax(logits))


def make_stage(rng: np.random.Generator, n: int, states: int, actions: int, gamma: float, init_scale: float):
    """A random (game, behaviour logits [n, S, A], order [n]) from ``rng``."""
    game = make_game(int(rng.integers(2**31)), num_states=states, num_agents=n, num_actions=actions, gamma=gamma)
    logits = rng.normal(scale=init_scale, size=(n, states, actions))
    return game, logits, rng.permutation(n)


#: Agent i's surrogate per variant, f(log_ratio, log_pre, adv, eps, weights): HAPPO's factor M =
#: exp(log_pre) on A^pi; A2PO's Eq. 6 with log_pre = log rho (the default); the diagnostic with rho
#: unclipped (PPO-clip on r_i * rho).
SURROGATES = {
    "happo": happo_objective,
    "a2po": a2po_objective,
    "a2po-unclipped-rho": lambda log_ratio, log_pre, adv, eps, w: ppo_clip_objective(log_ratio + log_pre, adv, eps, w),
}


@functools.partial(jax.jit, static_argnames="surrogate")
def _ascent(surrogate, theta, log_old, table_i, log_pre, adv, weights, eps, lr, steps):
    """``steps`` gradient-ascent steps of ``SURROGATES[surrogate]`` on agent i's logits theta [S, A].

    log_old: [S, A] behaviour log-probs of agent i; table_i: [J] agent i's action in each joint
    action; log_pre: [S, J] preceding agents' log ratio; adv: [S, J] the variant's advantages;
    weights: [S, J] d^pi(s) pi(a|s), the mask that turns masked_mean into the expectation.
    """

    def objective(th):
        log_ratio = (jax.nn.log_softmax(th) - log_old)[:, table_i]
        return SURROGATES[surrogate](log_ratio, log_pre, adv, eps, weights)

    grad = jax.grad(objective)
    return jax.lax.fori_loop(0, steps, lambda _, th: th + lr * grad(th), theta)


def expected_tv(p: np.ndarray, q: np.ndarray, d: np.ndarray) -> float:
    """E_{s ~ d} TV(p(.|s), q(.|s)) for [S, A] policies."""
    return float(d @ (0.5 * np.abs(p - q).sum(-1)))


def _advantages(variant: str, game, base, prev, log_pi: np.ndarray, log_hat: np.ndarray, lam: float) -> np.ndarray:
    """The [S, J] advantages agent i's surrogate uses: A^pi, the exact A^{pi_hat^{i-1}} or PreOPC's expectation."""
    if variant in ("happo", "a2po-uncorrected"):
        return base.A
    if variant == "a2po-preopc":
        return preopc_expectation(game, np.exp(log_pi), np.exp(log_hat), base.V, lam)
    return prev.A


def run_stage(
    game, logits: np.ndarray, order: np.ndarray, variant: str, lr: float, eps: float, steps: int, lam: float
) -> dict:
    """One stage of agent-by-agent updates from the behaviour policy softmax(logits).

    logits: [n, S, A]; order: [n] agent indices (position k = 1..n). Returns per position: dJ
    [n] = J(pi_hat^k) - J(pi_hat^{k-1}), tv [n] = E_{d^pi} TV(pi_hat_i, pi_i), err_intuitive [n] =
    |J(pi_hat^k) - L^I| (Prop. 1), err_intuitive_diff [n] = the same with L^I's value before agent i
    moves subtracted (|dJ - (L^I(pi_hat^k) - L^I(pi_hat^{k-1}))|, the part that can steer agent i),
    err_corrected [n] = |J(pi_hat^k) - L| (Thm. 1); and stage_dJ.
    """
    n = game.num_agents
    table = joint_action_table(n, game.num_actions)
    log_pi = log_softmax(logits)  # behaviour, [n, S, A]
    base = evaluate(game, np.exp(log_pi))
    weights = base.d[:, None] * base.pi  # d^pi(s) pi(a|s), [S, J]
    log_hat = log_pi.copy()  # pi_hat^{k}, updated agent by agent
    prev = base
    out = {key: [] for key in ("dJ", "tv", "err_intuitive", "err_intuitive_diff", "err_corrected")}
    for k, i in enumerate(order, start=1):
        log_pre = (agent_log_probs(log_hat, table) - agent_log_probs(log_pi, table)).sum(0)  # log rho, [S, J]
        adv = _advantages(variant, game, base, prev, log_pi, log_hat, lam)
        clip = eps if variant == "happo" else float(adaptive_clip(eps, k, n))
        surrogate = variant if variant in SURROGATES else "a2po"
        theta = _ascent(
            surrogate,
            jnp.asarray(logits[i], jnp.float32),
            jnp.asarray(log_pi[i], jnp.float32),
            table[:, i],
            jnp.asarray(log_pre, jnp.float32),
            jnp.asarray(adv, jnp.float32),
            jnp.asarray(weights, jnp.float32),
            clip,
            lr,
            steps,
        )
        log_hat[i] = log_softmax(np.asarray(theta, np.float64))
        new = evaluate(game, np.exp(log_hat))
        dj = new.J - prev.J
        sampled = weights * np.exp(log_pre + agent_log_probs(log_hat, table)[i] - agent_log_probs(log_pi, table)[i])
        out["dJ"].append(dj)
        out["tv"].append(expected_tv(np.exp(log_hat[i]), np.exp(log_pi[i]), base.d))
        # E_{d^pi, pi_hat^i}[A] / (1 - gamma): the surrogates' predicted gain over J(pi_hat^{i-1}).
        gain_intuitive = (sampled * base.A).sum() / (1 - game.gamma)
        offset = (weights * np.exp(log_pre) * base.A).sum() / (1 - game.gamma)  # L^I - J before agent i moves
        out["err_intuitive"].append(abs(dj - gain_intuitive))
        out["err_intuitive_diff"].append(abs(dj - (gain_intuitive - offset)))
        out["err_corrected"].append(abs(dj - (sampled * prev.A).sum() / (1 - game.gamma)))
        prev = new
    return {**{key: np.array(v) for key, v in out.items()}, "stage_dJ": prev.J - base.J}


def mean_and_se(x: np.ndarray) -> tuple[float, float]:
    """Mean and standard error across stages of per-stage values x [m]."""
    se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return float(x.mean()), se


def summarise(results: list[dict]) -> dict:
    """Rates (mean, SE across stages) from one variant's stage results."""
    dj = np.stack([r["dJ"] for r in results])  # [m, n]
    stage = np.array([r["stage_dJ"] for r in results])
    return {
        "agent_improved": mean_and_se((dj > 0).mean(1)),
        "later_improved": mean_and_se((dj[:, 1:] > 0).mean(1)) if dj.shape[1] > 1 else (float("nan"), float("nan")),
        "stage_improved": mean_and_se((stage > 0).astype(float)),
        "stage_dJ": mean_and_se(stage),
        "worst_agent_dJ": float(dj.min()),
        "tv": mean_and_se(np.stack([r["tv"] for r in results]).mean(1)),
        "err_intuitive": mean_and_se(np.stack([r["err_intuitive"][1:] for r in results]).mean(1)),
        "err_intuitive_diff": mean_and_se(np.stack([r["err_intuitive_diff"][1:] for r in results]).mean(1)),
        "err_corrected": mean_and_se(np.stack([r["err_corrected"][1:] for r in results]).mean(1)),
    }


def study(
    agents,
    configs,
    stages: int,
    seed: int,
    states: int,
    actions: int,
    gamma: float,
    init_scale: float,
    steps: int,
    lam: float,
    variants=VARIANTS,
) -> list[dict]:
    """Rows {n, lr, eps, variant, stages, summary...}; the same stages for every config and variant."""
    rows = []
    for n in agents:
        rng = np.random.default_rng([seed, n])
        drawn = [make_stage(rng, n, states, actions, gamma, init_scale) for _ in range(stages)]
        for lr, eps in configs:
            for variant in variants:
                res = [run_stage(g, lg, o, variant, lr, eps, steps, lam) for g, lg, o in drawn]
                rows.append({"n": n, "lr": lr, "eps": eps, "variant": variant, "stages": stages, **summarise(res)})
    return rows


def plus_minus(x: tuple[float, float], digits: int = 3) -> str:
    return f"{x[0]:.{digits}f} ± {x[1]:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    """Two markdown tables: improvement frequencies, and the surrogates' errors (Prop. 1 vs Thm. 1)."""
    lines = [
        "### How often an update improves J (mean ± standard error across stages)",
        "",
        "| n | lr | eps | variant | agent update improves J | positions >= 2 | stage improves J | "
        "stage dJ | worst agent dJ | mean TV of an update |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['lr']:g} | {r['eps']:g} | {r['variant']} | {plus_minus(r['agent_improved'])} | "
            f"{plus_minus(r['later_improved'])} | {plus_minus(r['stage_improved'])} | {plus_minus(r['stage_dJ'])} | "
            f"{r['worst_agent_dJ']:.3f} | {plus_minus(r['tv'])} |"
        )
    lines += [
        "",
        "### Surrogate error at positions >= 2: mean |J(pi_hat^i) - L^I| (Prop. 1) vs |J(pi_hat^i) - L| "
        "(Thm. 1, exact A^{pi_hat^{i-1}})",
        "",
        "| n | lr | eps | variant | Prop. 1 intuitive L^I | L^I minus its value before agent i moves | "
        "Thm. 1 corrected L |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['lr']:g} | {r['eps']:g} | {r['variant']} | {plus_minus(r['err_intuitive'], 4)} | "
            f"{plus_minus(r['err_intuitive_diff'], 4)} | {plus_minus(r['err_corrected'], 4)} |"
        )
    return "\n".join(lines)


def study_parser(doc: str, configs: list[str], stages: int, steps_help: str) -> argparse.ArgumentParser:
    """The command line shared by the tabular studies (this one and tabular_joint_improvement.py)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument("--configs", nargs="+", default=configs, help="lr:eps pairs")
    parser.add_argument("--stages", type=int, default=stages)
    parser.add_argument("--steps", type=int, default=20, help=steps_help)
    parser.add_argument("--states", type=int, default=4)
    parser.add_argument("--actions", type=int, default=3)
    parser.add_argument("--gamma", type=float, default=0.9)
    parser.add_argument("--init-scale", type=float, default=1.0, help="std of the initial logits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this path")
    parser.add_argument("--no-save", action="store_true")
    return parser


def run_study(script: str, argv, args, rows_fn, describe, table_fn) -> None:
    """Time ``rows_fn(configs)``, then publish ``table_fn(rows)`` under a header that says
    ``describe(seconds)``, into ``benchmarks/results/<script stem>.md`` (and JSON with --json)."""
    from harness import header, publish

    configs = [tuple(float(v) for v in c.split(":")) for c in args.configs]
    t0 = time.perf_counter()
    rows = rows_fn(configs)
    head = header(script, argv, describe(time.perf_counter() - t0))
    publish(head + table_fn(rows) + "\n\n", script.replace(".py", ".md"), not args.no_save)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def main(argv=None) -> None:
    parser = study_parser(
        __doc__, ["1:0.2", "10:0.2", "50:0.2", "50:0.5", "200:0.2"], 1000, "gradient-ascent steps per agent"
    )
    parser.add_argument("--lam", type=float, default=0.95, help="PreOPC lambda of the a2po-preopc variant")
    args = parser.parse_args(argv)
    run_study(
        "tabular_improvement.py",
        argv,
        args,
        lambda configs: study(
            args.agents,
            configs,
            args.stages,
            args.seed,
            args.states,
            args.actions,
            args.gamma,
            args.init_scale,
            args.steps,
            args.lam,
        ),
        lambda seconds: (
            f"{args.stages} random stages per n (game, initial softmax policy with logits ~ N(0, "
            f"{args.init_scale:g}^2), order); S={args.states}, A={args.actions}, gamma={args.gamma:g}, "
            f"{args.steps} gradient-ascent steps per agent, PreOPC lambda={args.lam:g}, seed {args.seed}; "
            f"{seconds:.0f} s"
        ),
        format_table,
    )


if __name__ == "__main__":
    main()

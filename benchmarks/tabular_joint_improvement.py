"""How often does a whole stage improve J? FP3O vs HAPPO vs MAPPO with exact updates in random tabular games.

FP3O paper Thm. 3 says FP3O's independence step (Eq. 9, every agent in parallel) and dependence step
(Eq. 10, every agent j with R_j = the other agents' middle ratios) each raise every pipeline's lower
bound on J. This script measures, with no sampling error, how often the joint policy a stage ends
with improves J, J(pi_new) >= J(pi_old), next to HAPPO (agent by agent) and MAPPO (every agent in
parallel on plain PPO-clip).

The stages are those of ``tabular_improvement.py`` (:func:`tabular_improvement.make_stage`: a random
game, a random softmax behaviour policy pi, an order), the surrogates exact expectations over
s ~ d^pi, a ~ pi with the exact A^pi, each agent's logits moved by ``steps`` steps of gradient
ascent with step size ``lr``:

- ``happo``: :func:`tabular_improvement.run_stage` (agents one after another, M = the preceding
  agents' ratio product, ``steps`` steps each);
- ``mappo``: every agent at once from pi on PPO-clip, ``steps`` steps. This is also FP3O's
  independence step, so its J is FP3O's middle J;
- ``mappo-2x``: ``mappo`` continued for another ``steps`` steps (FP3O's number of steps);
- ``fp3o``: from the middle policies, ``steps`` steps of Eq. 10 for every agent at once, R_j fixed
  from the middle policies (the library's ``fp3o_objective``);
- ``fp3o-guard``: ``fp3o``, but the middle policies are kept where the public code's guard
  (``objectives.fp3o_guard``, with the d^pi pi weights as mask) fails.

Recorded: the rate of stages with J(pi_new) >= J(pi), for FP3O also J(pi_new) >= J(pi_mid) (the
dependence step's own effect, the second inequality of Thm. 3 measured on J instead of the bound),
the mean stage gain, and the mean E_{d^pi} TV between each agent's new and behaviour policy.
Means ± standard errors across stages; every variant sees the same stages (paired).

    python benchmarks/tabular_joint_improvement.py                 # the table in benchmarks/results/
    python benchmarks/tabular_joint_improvement.py --stages 4 --agents 2 --no-save --json out.json
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxseq.envs.tabular import joint_action_table
from jaxseq.envs.tabular_exact import agent_log_probs, evaluate
from jaxseq.objectives import fp3o_guard, fp3o_objective

from tabular_improvement import (
    expected_tv,
    log_softmax,
    make_stage,
    mean_and_se,
    plus_minus,
    run_stage,
    run_study,
    study_parser,
)

VARIANTS = ("happo", "mappo", "mappo-2x", "fp3o", "fp3o-guard")


@functools.partial(jax.jit, static_argnames="steps")
def _parallel_ascent(theta, log_old, table, log_mid, adv, weights, eps, lr, steps):
    """``steps`` gradient-ascent steps of every agent at once on Eq. 10 (Eq. 9 with log_mid = 0).

    theta, log_old: [n, S, A] logits and behaviour log-probs; table [J, n]; log_mid [S, J, n] every
    agent's middle log ratio; adv, weights: [S, J]. ``fp3o_objective`` averages over the agent
    axis too (the mask broadcasts to [S, J, n] and sums to n), and agent i's term depends only on its
    own logits, so the step size lr * n gives each agent the ascent of its own surrogate with lr.
    """
    n = theta.shape[0]

    def objective(th):
        log_ratio = jnp.moveaxis(agent_log_probs(jax.nn.log_softmax(th) - log_old, table), 0, -1)  # [S, J, n]
        return fp3o_objective(log_ratio, log_mid, adv[..., None], eps, weights[..., None])

    grad = jax.grad(objective)
    return jax.lax.fori_loop(0, steps, lambda _, th: th + lr * n * grad(th), theta)


def _mean_tv(log_new: np.ndarray, log_pi: np.ndarray, d: np.ndarray) -> float:
    """Mean over agents of E_{d^pi} TV(new_i, pi_i)."""
    return float(np.mean([expected_tv(np.exp(a), np.exp(b), d) for a, b in zip(log_new, log_pi)]))


def run_parallel_stage(game, logits: np.ndarray, lr: float, eps: float, steps: int) -> dict:
    """MAPPO, MAPPO with twice the steps, FP3O and FP3O with the guard from the behaviour softmax(logits) [n, S, A].

    Returns {variant: {"dJ": J(new) - J(pi), "tv": mean TV}} and, for the FP3O variants,
    "dep_dJ": J(new) - J(mid)."""
    n = game.num_agents
    table = joint_action_table(n, game.num_actions)
    log_pi = log_softmax(logits)
    base = evaluate(game, np.exp(log_pi))
    weights = base.d[:, None] * base.pi  # d^pi(s) pi(a|s), [S, J]
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    args = dict(log_old=f32(log_pi), table=table, adv=f32(base.A), weights=f32(weights), eps=eps, lr=lr, steps=steps)
    no_mid = jnp.zeros(base.A.shape + (n,), jnp.float32)

    def ascend(theta, log_mid):
        return log_softmax(np.asarray(_parallel_ascent(f32(theta), log_mid=log_mid, **args), np.float64))

    log_mid_pi = ascend(logits, no_mid)  # MAPPO = FP3O's independence step
    log_mid = np.moveaxis(agent_log_probs(log_mid_pi - log_pi, table), 0, -1)  # [S, J, n]
    finals = {"mappo": log_mid_pi, "mappo-2x": ascend(log_mid_pi, no_mid), "fp3o": ascend(log_mid_pi, f32(log_mid))}
    passed = bool(fp3o_guard(f32(log_mid), f32(base.A)[..., None], f32(weights)[..., None]))
    finals["fp3o-guard"] = finals["fp3o"] if passed else log_mid_pi
    j_mid = evaluate(game, np.exp(log_mid_pi)).J
    out = {}
    for variant, log_new in finals.items():
        j_new = evaluate(game, np.exp(log_new)).J
        out[variant] = {"dJ": j_new - base.J, "tv": _mean_tv(log_new, log_pi, base.d)}
        if variant.startswith("fp3o"):
            out[variant].update(dep_dJ=j_new - j_mid, guard=float(passed))
    return out


def summarise(results: list[dict]) -> dict:
    """Rates (mean, SE across stages) from one variant's per-stage results."""
    dj = np.array([r["dJ"] for r in results])
    row = {
        "stage_improved": mean_and_se((dj >= 0).astype(float)),
        "stage_dJ": mean_and_se(dj),
        "worst_stage_dJ": float(dj.min()),
        "tv": mean_and_se(np.array([r["tv"] for r in results])),
    }
    if "dep_dJ" in results[0]:
        row["dep_improved"] = mean_and_se((np.array([r["dep_dJ"] for r in results]) >= 0).astype(float))
        row["guard_pass"] = mean_and_se(np.array([r["guard"] for r in results]))
    return row


def study(
    agents, configs, stages: int, seed: int, states: int, actions: int, gamma: float, init_scale: float, steps: int
) -> list[dict]:
    """Rows {n, lr, eps, variant, stages, summary...}; the same stages for every config and variant."""
    rows = []
    for n in agents:
        rng = np.random.default_rng([seed, n])
        drawn = [make_stage(rng, n, states, actions, gamma, init_scale) for _ in range(stages)]
        for lr, eps in configs:
            per_variant = {v: [] for v in VARIANTS}
            for game, logits, order in drawn:
                happo = run_stage(game, logits, order, "happo", lr, eps, steps, lam=1.0)  # lam unused by happo
                per_variant["happo"].append({"dJ": happo["stage_dJ"], "tv": float(happo["tv"].mean())})
                for variant, res in run_parallel_stage(game, logits, lr, eps, steps).items():
                    per_variant[variant].append(res)
            rows += [
                {"n": n, "lr": lr, "eps": eps, "variant": v, "stages": stages, **summarise(per_variant[v])}
                for v in VARIANTS
            ]
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "### How often a stage improves J, J(pi_new) >= J(pi_old) (mean ± standard error across stages)",
        "",
        "| n | lr | eps | variant | stage improves J | dependence step improves J over the middle | "
        "guard passes | stage dJ | worst stage dJ | mean TV of an agent |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        dep = plus_minus(r["dep_improved"]) if "dep_improved" in r else ""
        guard = plus_minus(r["guard_pass"]) if "guard_pass" in r else ""
        lines.append(
            f"| {r['n']} | {r['lr']:g} | {r['eps']:g} | {r['variant']} | {plus_minus(r['stage_improved'])} | {dep} | "
            f"{guard} | {plus_minus(r['stage_dJ'], 4)} | {r['worst_stage_dJ']:.4f} | {plus_minus(r['tv'])} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = study_parser(
        __doc__, ["1:0.2", "10:0.2", "50:0.2", "200:0.2"], 500, "gradient-ascent steps per agent and step"
    )
    args = parser.parse_args(argv)
    run_study(
        "tabular_joint_improvement.py",
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
        ),
        lambda seconds: (
            f"{args.stages} random stages per n (those of tabular_improvement.py with the same seed); "
            f"S={args.states}, A={args.actions}, gamma={args.gamma:g}, {args.steps} gradient-ascent steps per "
            f"agent and step (FP3O: independence + dependence), exact A^pi; seed {args.seed}; {seconds:.0f} s"
        ),
        format_table,
    )


if __name__ == "__main__":
    main()

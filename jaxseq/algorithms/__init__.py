"""Algorithms as declarations: which critic input, which estimator, which update scheme.

An algorithm is not a training loop; ``jaxseq.train`` reads these fields and assembles the
compiled program from the shared pieces.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str
    #: "state": centralised critic on the agent-specific global state; "obs": local critic.
    critic_input: str
    #: "simultaneous": every agent's actor is updated on the same batch at once;
    #: "sequential": agent by agent in an order, each seeing the preceding agents' new policies;
    #: "rpisa": agent by agent, a fresh rollout before each agent's update (one agent per update);
    #: "fp3o": every agent at once, an independence step then a dependence step (seed 002 Alg. 2).
    scheme: str
    #: advantage estimator in jaxseq.estimators: "gae"; "preopc" (under the preceding agents' ratio,
    #: per agent); "vtrace" (under every agent's current ratio, recomputed before each epoch).
    estimator: str
    #: surrogate in jaxseq.objectives: "ppo", "coppo" (others' clipped ratio), "happo" (preceding
    #: factor on A), "a2po" (Eq. 6), "opspo" (seed 003 Eq. 20), "fp3o" (seed 002 Eq. 10; Eq. 9 with R = 1).
    objective: str
    #: agent order of the sequential scheme: "config" (Config.selection_rule) or a fixed rule.
    order: str
    description: str


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("mappo", "state", "simultaneous", "gae", "ppo", "",
                  "MAPPO (Yu et al. 2022): PPO-clip per agent, centralised critic on the agent-specific global state"),
        Algorithm("ippo", "obs", "simultaneous", "gae", "ppo", "",
                  "IPPO (de Witt et al. 2020): PPO-clip per agent with a local critic on the agent's own observation"),
        Algorithm("coppo", "state", "simultaneous", "gae", "coppo", "",
                  "CoPPO (Wu et al. 2021) without the advantage mix: r_i * sg(clip(prod_{j != i} r_j, 1 +/- "
                  "coppo_clip_others)) clipped as a whole with clip_eps, all agents at once"),
        Algorithm("mappo_vtrace", "state", "simultaneous", "vtrace", "ppo", "",
                  "MAPPO with V-trace advantages and targets (seed 000 Sec. 5.2 ablation): before every epoch the "
                  "joint ratio of all agents' current policies corrects the traces"),
        Algorithm("rpisa", "state", "rpisa", "gae", "ppo", "random",
                  "RPISA-PPO (seed 000 Table 1; Bertsekas 2021): agents in a random order per stage, each after a fresh "
                  "rollout, PPO-clip on that agent only; the critic fitted on every rollout"),
        Algorithm("happo", "state", "sequential", "gae", "happo", "random",
                  "HAPPO (Kuba et al. 2022): a random order per rollout; each agent maximises "
                  "M * min(r A, clip(r) A), M HARL's factor: the product over the preceding agents of their "
                  "ratio after over before their own update (the ratio over the behaviour policy under NoPS)"),
        Algorithm("happo_preopc", "state", "sequential", "preopc", "happo", "random",
                  "HAPPO with A2PO's preceding-agent off-policy correction (PreOPC) of the advantages"),
        Algorithm("a2po", "state", "sequential", "preopc", "a2po", "config",
                  "A2PO (Wang et al. 2023, Alg. 1): PreOPC advantages per agent, Eq. 6 surrogate with the "
                  "preceding ratio clipped to 1 +/- eps/2, adaptive clipping, agent selection rule"),
        Algorithm("fp3o", "state", "fp3o", "gae", "fp3o", "",
                  "FP3O (Feng et al. 2023, seed 002 Alg. 2): every agent maximises PPO-clip (Eq. 9) in parallel -> "
                  "middle policies, then every agent j maximises min(r_j R A, clip(r_j) R A), R the other agents' "
                  "middle ratio product (Eq. 10); fp3o_guard adds the public code's improvement guard"),
        Algorithm("opspo", "state", "sequential", "vtrace", "opspo", "random",
                  "OPSPO (seed 003 Alg. 1, Eq. 20): V-trace advantages and targets under the preceding ratio (AEC), "
                  "state weights min(omega, 1) by step-wise weighted IS (SDC), dynamic clip range scaled by the "
                  "clipped preceding ratio (CRC); each switchable (opspo_aec, opspo_sdc, opspo_crc)"),
    )
}

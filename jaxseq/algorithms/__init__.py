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
    #: "sequential": agent by agent in an order, each seeing the preceding agents' new policies.
    scheme: str
    #: advantage estimator in jaxseq.estimators ("gae", or "preopc" recomputed per agent).
    estimator: str
    #: surrogate in jaxseq.objectives: "ppo", "coppo" (others' clipped ratio), "happo" (preceding
    #: factor on A), "a2po" (Eq. 6).
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
        Algorithm("happo", "state", "sequential", "gae", "happo", "random",
                  "HAPPO (Kuba et al. 2022): a random order per rollout; each agent maximises "
                  "M * min(r A, clip(r) A), M the preceding agents' unclipped ratio product"),
        Algorithm("happo_preopc", "state", "sequential", "preopc", "happo", "random",
                  "HAPPO with A2PO's preceding-agent off-policy correction (PreOPC) of the advantages"),
        Algorithm("a2po", "state", "sequential", "preopc", "a2po", "config",
                  "A2PO (Wang et al. 2023, Alg. 1): PreOPC advantages per agent, Eq. 6 surrogate with the "
                  "preceding ratio clipped to 1 +/- eps/2, adaptive clipping, agent selection rule"),
    )
}

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
    #: "simultaneous": every agent's actor is updated on the same batch at once.
    scheme: str
    #: advantage estimator in jaxseq.estimators.
    estimator: str
    description: str


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("mappo", "state", "simultaneous", "gae",
                  "MAPPO (Yu et al. 2022): PPO-clip per agent, centralised critic on the agent-specific global state"),
        Algorithm("ippo", "obs", "simultaneous", "gae",
                  "IPPO (de Witt et al. 2020): PPO-clip per agent with a local critic on the agent's own observation"),
    )
}

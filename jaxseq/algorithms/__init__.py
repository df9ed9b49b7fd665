"""Algorithms as declarations: which critic, which estimator, which surrogate, which update scheme,
which agent order, and which capabilities. No algorithm has a training loop of its own.

A declaration names its pieces (keys of :data:`~jaxseq.algorithms.components.ESTIMATORS`,
:data:`~jaxseq.algorithms.components.OBJECTIVES` and :data:`~jaxseq.algorithms.components.SCHEMES`) or passes the
functions themselves; :meth:`Algorithm.resolve` turns it, for one config, into the
:class:`Resolved` algorithm the engine runs (ablation switches applied, names looked up).

Register your own from a notebook or a script with :func:`register` (docs/adding-an-algorithm.md)::

    from jaxseq.algorithms import ALGORITHMS, register
    register(dataclasses.replace(ALGORITHMS["happo"], name="happo_clipped", objective=my_objective))
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

from jaxseq import ordering
from jaxseq.algorithms.components import ESTIMATORS, OBJECTIVES, SCHEMES
from jaxseq.contracts import UNIT_INPUTS, Estimator, Objective, Resolved, Scheme

if TYPE_CHECKING:
    from jaxseq.config import Config

CRITIC_INPUTS = ("state", "obs")
#: What a sequential scheme's surrogate gets as ``log_rho``: "joint", the papers' preceding joint
#: ratio rho_{-i} over the behaviour policy at the unit's start; "incremental", HARL's HAPPO factor
#: (each earlier unit's members' log-prob after their update minus before it).
PRECEDING = ("joint", "incremental")
STATE_WEIGHTS = ("none", "wis", "bch")


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str
    description: str
    #: "state": centralised critic on the agent-specific global state; "obs": local critic.
    critic_input: str = "state"
    #: update scheme (key of components.SCHEMES, or a Scheme): "simultaneous", "sequential",
    #: "rpisa", "fp3o".
    scheme: str | Scheme = "simultaneous"
    #: advantage estimator (key of components.ESTIMATORS, an Estimator, or a function, taken as off-policy).
    estimator: str | Estimator | Callable = "gae"
    #: surrogate objective (key of components.OBJECTIVES, an Objective declaring the unit inputs
    #: it reads, or a function with their signature, taken to read none of the optional ones).
    objective: str | Objective | Callable = "ppo"
    #: agent order of the schemes that have one: "config" (Config.selection_rule) or a fixed rule of
    #: jaxseq.ordering.SELECTION_RULES; "" for the schemes without one.
    order: str = ""
    #: sequential schemes: what the surrogate's log_rho is (see PRECEDING).
    preceding: str = "joint"
    #: A2PO's adaptive clipping C(eps, k) per position (switched by Config.adaptive_clip, shaped by clip_c).
    adaptive_clip: bool = False
    #: OPSPO's state weights min(omega, 1): "none", "wis" (step-wise weighted IS), "bch" (learned omega-nets).
    state_weights: str = "none"
    #: ``switches(algorithm, config) -> algorithm``: the ablation switches that change a declared piece.
    switches: Callable[["Algorithm", "Config"], "Algorithm"] | None = None
    #: Config fields that only this algorithm reads (validation refuses them elsewhere where set).
    fields: tuple[str, ...] = ()

    def check(self) -> None:
        """Raise ValueError naming the declaration's field when a piece is unknown."""

        def bad(field, value, allowed):
            raise ValueError(f"algorithm {self.name!r}: {field}={value!r} is not allowed; allowed: {allowed}")

        if self.critic_input not in CRITIC_INPUTS:
            bad("critic_input", self.critic_input, CRITIC_INPUTS)
        if not isinstance(self.scheme, Scheme) and self.scheme not in SCHEMES:
            bad("scheme", self.scheme, sorted(SCHEMES) + ["a jaxseq.algorithms.Scheme"])
        if (
            not callable(self.estimator)
            and not isinstance(self.estimator, Estimator)
            and self.estimator not in ESTIMATORS
        ):
            bad("estimator", self.estimator, sorted(ESTIMATORS) + ["an Estimator or a function"])
        if not isinstance(self.objective, Objective) and not callable(self.objective):
            if self.objective not in OBJECTIVES:
                bad("objective", self.objective, sorted(OBJECTIVES) + ["an Objective or a function"])
        reads, provides = self.objective_of.reads, self.scheme_of.provides
        if set(reads) - set(UNIT_INPUTS):
            bad("objective", self.objective, f"an objective reading only unit inputs of {list(UNIT_INPUTS)}")
        if set(reads) - set(provides):
            raise ValueError(
                f"algorithm {self.name!r}: objective={self.objective!r} reads {sorted(set(reads) - set(provides))}, "
                f"which scheme={self.scheme!r} does not provide (it provides {list(provides) or 'none'})"
            )
        if self.order not in ("", "config", *ordering.SELECTION_RULES):
            bad("order", self.order, ["", "config", *ordering.SELECTION_RULES])
        if self.preceding not in PRECEDING:
            bad("preceding", self.preceding, PRECEDING)
        if self.state_weights not in STATE_WEIGHTS:
            bad("state_weights", self.state_weights, STATE_WEIGHTS)
        if "critic_fit" in self.fields and not self.scheme_of.critic_per_unit:
            bad("fields", self.fields, "critic_fit only with a scheme that has critic_per_unit (the sequential one)")

    @property
    def objective_of(self) -> Objective:
        if isinstance(self.objective, str):
            return OBJECTIVES[self.objective]
        return self.objective if isinstance(self.objective, Objective) else Objective(self.objective)

    @property
    def scheme_of(self) -> Scheme:
        return self.scheme if isinstance(self.scheme, Scheme) else SCHEMES[self.scheme]

    def resolve(self, config: "Config") -> "Resolved":
        """The pieces for ``config``: switches applied, names looked up, the order rule chosen."""
        alg = self.switches(self, config) if self.switches else self
        alg.check()
        est = alg.estimator
        if not isinstance(est, Estimator):
            est = ESTIMATORS[est] if isinstance(est, str) else Estimator(est, off_policy=True)
        order = config.selection_rule if alg.order == "config" else alg.order
        return Resolved(
            name=alg.name,
            critic_input=alg.critic_input,
            scheme=alg.scheme_of,
            estimator=est,
            objective=alg.objective_of.fn,
            order=order,
            preceding=alg.preceding,
            adaptive_clip=alg.adaptive_clip and config.adaptive_clip,
            state_weights=alg.state_weights,
        )


def _opspo_switches(alg: Algorithm, cfg: "Config") -> Algorithm:
    """AEC off: GAE instead of V-trace; SDC off: no state weights; "auto": learned omega-nets under
    NoPS, step-wise weighted IS under parameter sharing (as in the OPSPO paper)."""
    if not cfg.opspo_sdc:
        method = "none"
    elif cfg.opspo_sdc_method == "auto":
        method = "bch" if cfg.sharing == "nops" else "wis"
    else:
        method = cfg.opspo_sdc_method
    return dataclasses.replace(alg, estimator=alg.estimator if cfg.opspo_aec else "gae", state_weights=method)


_OPSPO_FIELDS = (
    "selection_rule",
    "vtrace_clip_rho",
    "vtrace_clip_c",
    "opspo_eps2",
    "opspo_aec",
    "opspo_sdc",
    "opspo_crc",
    "opspo_sdc_method",
    "omega_n",
    "omega_e",
    "f_e",
    "density_batch",
    "density_lr",
    "density_hidden",
    "critic_fit",
)

#: Every registered algorithm by name (the built-in ones below, and any :func:`register` adds).
ALGORITHMS: dict[str, Algorithm] = {}


def register(algorithm: Algorithm, overwrite: bool = False) -> Algorithm:
    """Make ``algorithm`` available by name (``Config.algo``, the CLI, the experiment scripts).

    Checks the declaration first (ValueError naming the bad field). A taken name raises ValueError
    unless ``overwrite``."""
    algorithm.check()
    if algorithm.name in ALGORITHMS and not overwrite:
        raise ValueError(f"an algorithm named {algorithm.name!r} is registered already (pass overwrite=True)")
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


for _alg in (
    Algorithm(
        "mappo", "MAPPO (Yu et al. 2022): PPO-clip per agent, centralised critic on the agent-specific global state"
    ),
    Algorithm(
        "ippo",
        "IPPO (de Witt et al. 2020): PPO-clip per agent with a local critic on the agent's own observation",
        critic_input="obs",
    ),
    Algorithm(
        "coppo",
        "CoPPO (Wu et al. 2021) without the advantage mix: r_i * sg(clip(prod_{j != i} r_j, 1 +/- "
        "coppo_clip_others)) clipped as a whole with clip_eps, all agents at once",
        objective="coppo",
        fields=("coppo_clip_others",),
    ),
    Algorithm(
        "mappo_vtrace",
        "MAPPO with V-trace advantages and targets (A2PO paper Sec. 5.2 ablation): before "
        "every epoch the joint ratio of all agents' current policies corrects the traces",
        estimator="vtrace",
        fields=("vtrace_clip_rho", "vtrace_clip_c"),
    ),
    Algorithm(
        "rpisa",
        "RPISA-PPO (A2PO paper Table 1; Bertsekas 2021): agents in a random order per stage, each "
        "after a fresh rollout, PPO-clip on that agent only; the critic fitted on every rollout",
        scheme="rpisa",
        order="random",
    ),
    Algorithm(
        "happo",
        "HAPPO (Kuba et al. 2022): a random order per rollout; each agent maximises "
        "M * min(r A, clip(r) A), M HARL's factor: the product over the preceding agents of their "
        "ratio after over before their own update (the ratio over the behaviour policy under NoPS)",
        scheme="sequential",
        objective="happo",
        order="random",
        preceding="incremental",
    ),
    Algorithm(
        "happo_preopc",
        "HAPPO with A2PO's preceding-agent off-policy correction (PreOPC) of the advantages",
        scheme="sequential",
        estimator="preopc",
        objective="happo",
        order="random",
        preceding="incremental",
        fields=("critic_fit",),
    ),
    Algorithm(
        "a2po",
        "A2PO (Wang et al. 2023, Alg. 1): PreOPC advantages per agent, Eq. 6 surrogate with the "
        "preceding ratio clipped to 1 +/- eps/2, adaptive clipping, agent selection rule",
        scheme="sequential",
        estimator="preopc",
        objective="a2po",
        order="config",
        adaptive_clip=True,
        fields=("selection_rule", "adaptive_clip", "clip_c", "critic_fit"),
    ),
    Algorithm(
        "fp3o",
        "FP3O (FP3O paper Alg. 2): every agent maximises PPO-clip (Eq. 9) in parallel -> middle "
        "policies, then every agent j maximises min(r_j R A, clip(r_j) R A), R the other agents' "
        "middle ratio product (Eq. 10); fp3o_guard adds the public code's improvement guard",
        scheme="fp3o",
        objective="fp3o",
        fields=("fp3o_guard",),
    ),
    Algorithm(
        "opspo",
        "OPSPO (OPSPO paper Alg. 1, Eq. 20): V-trace advantages and targets under the preceding "
        "ratio (AEC), state weights min(omega, 1) by step-wise weighted IS or learned omega-nets "
        "(SDC), dynamic clip range scaled by the clipped preceding ratio (CRC); each switchable "
        "(opspo_aec, opspo_sdc, opspo_crc); the agent order by A2PO's selection_rule",
        scheme="sequential",
        estimator="vtrace",
        objective="opspo",
        # OPSPO Alg. 1 iterates the agents without naming an order, and App. B says the parameters it
        # does not mention are A2PO's: the selection rule (semi-greedy by default; "random" is one).
        order="config",
        switches=_opspo_switches,
        fields=_OPSPO_FIELDS,
    ),
):
    register(_alg)

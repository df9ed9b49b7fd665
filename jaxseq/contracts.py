"""The contracts between algorithm declarations, the update engine and the schemes: the records
a declaration resolves into (:class:`Estimator`, :class:`Objective`, :class:`Scheme`, the
:class:`Resolved` algorithm for one config) and the :class:`UnitInputs` a scheme gives each update
unit. A leaf of plain records, outside the :mod:`jaxseq.algorithms` package on purpose: importing
anything under that package runs its ``__init__``, which imports the schemes, so a module the
schemes import could not live there.

The unit's contract: a scheme builds one :class:`UnitInputs` per unit and passes it to
:meth:`jaxseq.engine.Engine.fit_unit`; the objective receives the fields that are not None (as
``[..., K]`` entries of its minibatch ``unit``, beside ``advantages`` and ``mask``). A scheme
declares which optional inputs it provides (``Scheme.provides``), an objective which it reads
(``Objective.reads``), and :meth:`jaxseq.algorithms.Algorithm.check` refuses an objective that
reads what its scheme does not provide.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

#: The optional inputs of a unit (the fields of :class:`UnitInputs` a scheme may leave None).
UNIT_INPUTS = ("log_rho", "state_weights", "log_mid")


class UnitInputs(NamedTuple):
    """What one update unit of K agents gets beyond its batch, each ``[T, B, K]`` or broadcastable
    (``[T, B, 1]``); None where the scheme does not provide it."""

    #: each unit agent's advantages under its own correction
    advantages: Any
    #: the clip range: a scalar, or ``[K]`` (A2PO's adaptive clip at each unit agent's position)
    clip_eps: Any
    #: each unit agent's preceding joint log ratio log rho_{-i}, or HAPPO's log factor
    log_rho: Any = None
    #: OPSPO's state weights min(omega, 1)
    state_weights: Any = None
    #: FP3O's middle log ratios (0 in the independence step)
    log_mid: Any = None


@dataclasses.dataclass(frozen=True)
class Objective:
    """A surrogate ``fn(log_ratio, unit, clip_eps, config) -> surrogate`` and the optional unit
    inputs it reads (of :data:`UNIT_INPUTS`)."""

    fn: Callable
    reads: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Estimator:
    """``fn(est, log_rho, config) -> (advantages, value_targets)`` (see
    :mod:`jaxseq.algorithms.components`)."""

    fn: Callable
    #: True when the estimate depends on the log ratio it is given.
    off_policy: bool


@dataclasses.dataclass(frozen=True)
class Scheme:
    """An actor update scheme (see :mod:`jaxseq.schemes`)."""

    #: ``run(engine, ts, data, est, key) -> (ts, targets, info)``
    run: Callable
    #: ``init_extra(num_agents) -> dict``: the scheme's entries of ``TrainState.extra``.
    init_extra: Callable[[int], dict] = lambda n: {}
    #: Config fields only this scheme reads.
    fields: tuple[str, ...] = ()
    #: Whether the scheme can fit the critic after each unit (``Config.critic_fit = "per-unit"``);
    #: an algorithm may declare the ``critic_fit`` field only on such a scheme.
    critic_per_unit: bool = False
    #: The optional unit inputs (of :data:`UNIT_INPUTS`) it gives every unit.
    provides: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Resolved:
    """An algorithm for one config, as the engine and the schemes read it."""

    name: str
    critic_input: str
    scheme: Scheme
    estimator: Estimator
    objective: Callable
    order: str
    preceding: str
    adaptive_clip: bool
    state_weights: str

"""The records an algorithm declaration resolves into, as the update engine and the schemes read
them: an :class:`Estimator`, a :class:`Scheme`, and the :class:`Resolved` algorithm for one config.
A leaf (plain dataclasses), so that the engine can name them without importing the registry
above it (:mod:`jaxseq.algorithms`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable


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

"""Host environments: Python programs that are not JAX, run in worker processes.

This package imports only NumPy at module level, so a worker process starts in a fraction of a
second; the environment libraries (PettingZoo MPE, gfootball, SMAC) are imported by the adapter
that needs them, inside the worker. The JAX side is :mod:`jaxseq.envs.bridge`.

A host environment is any object with this interface (``N`` agents, arrays already padded to the
widths its :class:`HostSpec` declares):

``reset(seed: int) -> HostObs``
    Start an episode.
``step(actions) -> (HostObs, reward [N] float32, terminated: bool, truncated: bool, won: bool)``
    One transition without reset. ``actions`` is int [N] (discrete) or float32 [N, A]
    (continuous).
``episode_metrics() -> dict[str, float]`` (optional)
    The behaviour metrics of the episode so far (e.g. GRF goals), read when it ends, whether it
    ended by itself or at the time limit; the keys are ``HostSpec.episode_metrics``.
``close()``

The worker adds the time limit, auto-reset and episode bookkeeping (:mod:`jaxseq.hostenv.worker`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np


class HostObs(NamedTuple):
    """One decision point. obs [N, O] float32, state [N, S] float32 (agent-specific global
    state), avail [N, A] bool (available actions), alive [N] bool."""

    obs: np.ndarray
    state: np.ndarray
    avail: np.ndarray
    alive: np.ndarray


@dataclasses.dataclass(frozen=True)
class HostSpec:
    """The shapes a host environment declares before any worker starts: the fields of
    :class:`jaxseq.envs.base.EnvSpec` that a worker may need, importable without JAX."""

    num_agents: int
    obs_dim: int
    state_dim: int
    num_actions: int
    obs_widths: tuple[int, ...]
    action_counts: tuple[int, ...]
    continuous: bool = False
    has_win: bool = False
    #: Names of the floats ``episode_metrics()`` reports (fixed per environment).
    episode_metrics: tuple[str, ...] = ()


def agent_states(obs: np.ndarray, team: np.ndarray) -> np.ndarray:
    """Agent-specific global state: row i is ``[obs_i, team]``; obs [N, O], team [G] -> [N, O + G]."""
    return np.concatenate([obs, np.broadcast_to(team, (obs.shape[0], team.shape[-1]))], axis=1).astype(np.float32)

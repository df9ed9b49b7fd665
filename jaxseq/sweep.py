"""Hyper-parameter sweeps run as one program: the grid, its members and their values.

A config's ``sweep`` names fields and the values each takes, ``(("actor_lr", (1e-4, 3e-4)),
("clip_eps", (0.1, 0.2)))``. The grid is their product (the last field varies fastest) and every
grid point runs ``num_seeds`` seeds: the *members*, ``M = G * S``, member ``m = g * S + s``. Seed
``s`` of every grid point starts from the same key as seed ``s`` of a run without the sweep, so a
grid point reproduces the separate run with its values.

Only fields that change neither array shapes nor the program's code may be swept
(:data:`SWEEPABLE`): their values become traced scalars of each member (``TrainState.hyper``), read
in place of the config's constants. A sign that switches code (``max_grad_norm <= 0`` disables the
clip) must be the same at every grid point.
"""

from __future__ import annotations

import itertools
from typing import Iterable

import numpy as np

from jaxseq.errors import ConfigError

#: The fields a sweep may vary: numbers the compiled program reads as values only.
SWEEPABLE = (
    "actor_lr",
    "critic_lr",
    "adam_eps",
    "clip_eps",
    "ent_coef",
    "ent_coef_continuous",
    "gamma",
    "gae_lambda",
    "max_grad_norm",
    "clip_c",
    "opspo_eps2",
    "vtrace_clip_rho",
    "vtrace_clip_c",
    "coppo_clip_others",
    "density_lr",
)

#: Swept fields whose sign switches code; every grid point must agree on it.
SIGN_SWITCHES = ("max_grad_norm",)


def normalize(sweep) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """``sweep`` as given (a mapping, or pairs from Python or JSON lists) -> ((field, values), ...)."""
    items = sweep.items() if isinstance(sweep, dict) else sweep
    try:
        return tuple((str(name), tuple(values)) for name, values in items)
    except (TypeError, ValueError):
        raise ConfigError("sweep", f"expected pairs (field, values), got {sweep!r}") from None


def parse_arg(text: str) -> tuple[str, tuple[float, ...]]:
    """``"actor_lr=1e-4,3e-4"`` (the CLI's ``--sweep``) -> ("actor_lr", (1e-4, 3e-4))."""
    name, eq, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not eq or not values.strip():
        raise ConfigError("sweep", f"expected FIELD=V1,V2,..., got {text!r}")
    try:
        return name, tuple(float(v) for v in values.split(","))
    except ValueError:
        raise ConfigError(name, f"sweep values must be numbers, got {values!r}") from None


def check(config) -> None:
    """Refuse a sweep over a field that does not exist or is outside :data:`SWEEPABLE`, a repeated
    field or value, an empty value list, or a sign switch that differs between grid points (before
    anything compiles)."""
    seen = set()
    for name, values in config.sweep:
        if name not in config.__dataclass_fields__:
            raise ConfigError(name, f"no such config field; a sweep may vary {', '.join(SWEEPABLE)}")
        if name not in SWEEPABLE:
            raise ConfigError(
                name,
                "cannot be swept: it changes array shapes or the program's code (start one run per value); "
                f"fields a sweep may vary: {', '.join(SWEEPABLE)}",
            )
        if name in seen:
            raise ConfigError(name, "appears twice in the sweep")
        seen.add(name)
        if not values:
            raise ConfigError(name, "a swept field needs at least one value")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(name, f"sweep values must be numbers, got {list(values)}")
        repeated = sorted({v for v in values if list(values).count(v) > 1})
        if repeated:
            raise ConfigError(name, f"the sweep value {repeated[0]:g} is given twice (each grid point runs once)")
        if name in SIGN_SWITCHES and len({v > 0 for v in values}) > 1:
            raise ConfigError(name, f"values <= 0 switch the code off; sweep only positive or only <= 0, got {values}")


def grid(config) -> list[dict[str, float]]:
    """The grid points of ``config.sweep``, each {field: value}; [{}] without a sweep."""
    return grid_of(config.sweep)


def grid_of(pairs) -> list[dict[str, float]]:
    """The grid points of sweep ``pairs`` ((field, values), ...; as in a config or its JSON)."""
    pairs = normalize(pairs)
    names = [name for name, _ in pairs]
    return [dict(zip(names, map(float, point))) for point in itertools.product(*(v for _, v in pairs))]


def point_configs(config) -> list:
    """One concrete config per grid point (no sweep left), validated like any config."""
    return [config.replace(sweep=(), **point) for point in grid(config)]


def member_values(config) -> dict[str, np.ndarray]:
    """{field: float32 [M]}: every member's swept values, members ordered g * S + s."""
    points = grid(config)
    return {
        name: np.repeat(np.asarray([p[name] for p in points], np.float32), config.num_seeds) for name, _ in config.sweep
    }


def label(point: dict[str, float]) -> str:
    """ "actor_lr=0.0001 clip_eps=0.1" (or "all" for the one point of no sweep)."""
    return " ".join(f"{k}={v:g}" for k, v in point.items()) or "all"


def member_label(config, member: int) -> str:
    """ "seed 1" or, in a sweep, "actor_lr=0.001 seed 1": which grid point and seed ``member`` is."""
    point, seed = divmod(member, config.num_seeds)
    return f"{label(grid(config)[point])} seed {seed}" if config.sweep else f"seed {seed}"


def split_members(values: np.ndarray, num_points: int) -> Iterable[np.ndarray]:
    """[M, ...] -> one [S, ...] slice per grid point."""
    return np.split(np.asarray(values), num_points)

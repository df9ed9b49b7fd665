"""Environment ids and construction.

An env id is ``family:name`` with optional parameters, e.g. ``smax:3m``, ``mpe:spread``,
``mpe:spread?n=5&reward=general``, ``tabular:game?seed=0&states=4&agents=3&actions=3&max_steps=50``,
``mamujoco:Humanoid-9|8?obsk=1``.
:func:`make_env` validates the id (before anything compiles) and returns an
:class:`~jaxseq.envs.base.AutoReset` environment.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

from jaxseq.envs.base import AutoReset, Env, EnvSpec, EnvState, MultiAgentEnv, Observation, Step, Transition
from jaxseq.errors import ConfigError

if TYPE_CHECKING:
    from jaxseq.envs.bridge import BridgeEnv

__all__ = [
    "AutoReset",
    "EnvSpec",
    "EnvState",
    "MultiAgentEnv",
    "Observation",
    "Step",
    "Transition",
    "make_env",
    "list_envs",
    "parse_env_id",
    "EnvFamily",
    "EnvParam",
    "FAMILIES",
    "register_env_family",
    "Env",
]


@dataclasses.dataclass(frozen=True)
class EnvParam:
    """One ``?key=value`` parameter of a family's env ids: its type, default, allowed values (None:
    any) and a line of help."""

    kind: type
    default: object
    allowed: tuple | None = None
    help: str = ""


@dataclasses.dataclass(frozen=True)
class EnvFamily:
    """A family of env ids ``family:name?k=v``: its task names, its parameters, and how to build one."""

    #: The task names (called when an id is parsed or the envs are listed, so it may import lazily).
    names: Callable[[], list[str]]
    params: dict[str, EnvParam]
    #: ``build(env_id, name, params) -> env``: a MultiAgentEnv (wrapped in AutoReset) or, for host
    #: families, a BridgeEnv.
    build: Callable[[str, str, dict], MultiAgentEnv | BridgeEnv]
    help: str
    #: Extra checks of the parsed parameters (env_id, params), raising ConfigError; run by parse_env_id.
    check: Callable[[str, dict], None] | None = None
    #: Host environments run in worker processes and auto-reset there (jaxseq.envs.bridge).
    host: bool = False

    def validate(self, family: str) -> None:
        """Raise ValueError naming the field of a malformed declaration."""
        if not family.isidentifier():
            raise ValueError(f"env family {family!r}: the name must be an identifier (it is the part before ':')")
        for field in ("names", "build"):
            if not callable(getattr(self, field)):
                raise ValueError(f"env family {family!r}: {field} must be a function")
        for key, param in self.params.items():
            if not isinstance(param, EnvParam):
                raise ValueError(f"env family {family!r}: params[{key!r}] must be an EnvParam, got {param!r}")
            if not isinstance(param.default, param.kind):
                raise ValueError(f"env family {family!r}: params[{key!r}].default is not a {param.kind.__name__}")


def _jaxmarl_limit(max_steps: int) -> int:
    """JaxMARL tests ``step >= max_steps`` before incrementing the step, so its episodes last
    max_steps + 1 transitions; passing max_steps - 1 gives episodes of exactly ``max_steps``."""
    return max_steps - 1


def _smax_names() -> list[str]:
    from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

    return sorted(MAP_NAME_TO_SCENARIO)


def _build_smax(env_id: str, name: str, params: dict) -> MultiAgentEnv:
    from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario

    from jaxseq.envs.jaxmarl_adapter import SMAXAdapter

    env = HeuristicEnemySMAX(scenario=map_name_to_scenario(name), max_steps=_jaxmarl_limit(params["max_steps"]))
    return SMAXAdapter(env_id, env, max_steps=params["max_steps"], has_win=True)


_MPE_TASKS = {
    "spread": "MPE_simple_spread_v3",
    "reference": "MPE_simple_reference_v3",
    "speaker_listener": "MPE_simple_speaker_listener_v4",
}


def _build_mpe(env_id: str, name: str, params: dict) -> MultiAgentEnv:
    from jaxmarl import make

    from jaxseq.envs.jaxmarl_adapter import MPEAdapter

    kwargs: dict = {"max_steps": _jaxmarl_limit(params["max_steps"])}
    if name == "spread":
        n = params["n"]
        # A2PO paper App. B.2.3: "shared" = fully cooperative (every agent gets the landmark
        # coverage reward), "general" = general-sum (each agent's own collision term mixed in).
        kwargs.update(num_agents=n, num_landmarks=n, local_ratio=0.0 if params["reward"] == "shared" else 0.5)
        if params["actions"] == "continuous":  # 5 forces in [0, 1]: none, -x, +x, -y, +y
            from jaxmarl.environments.mpe.default_params import CONTINUOUS_ACT

            kwargs["action_type"] = CONTINUOUS_ACT
    elif params["n"] != 2 or params["reward"] != "shared" or params["actions"] != "discrete":
        raise ConfigError(
            "env", f"mpe:{name} takes only max_steps (it has 2 agents, one reward setting and discrete actions)"
        )
    env = make(_MPE_TASKS[name], **kwargs)
    return MPEAdapter(env_id, env, max_steps=params["max_steps"], has_win=False)


#: Largest S * (A**N) * S the tabular family builds (the transition tensor, float64).
_TABULAR_MAX_ENTRIES = 4_000_000


def _check_tabular(env_id: str, params: dict) -> None:
    if params["seed"] < 0:
        raise ConfigError("env", f"parameter seed in {env_id!r} must be >= 0, got {params['seed']}")
    for key in ("states", "agents", "actions"):
        if params[key] < 1:
            raise ConfigError("env", f"parameter {key} in {env_id!r} must be positive, got {params[key]}")
    size = params["states"] ** 2 * params["actions"] ** params["agents"]
    if size > _TABULAR_MAX_ENTRIES:
        raise ConfigError(
            "env",
            f"{env_id!r} needs states**2 * actions**agents = {size} transition entries; "
            f"at most {_TABULAR_MAX_ENTRIES:,} allowed",
        )


def _build_tabular(env_id: str, name: str, params: dict) -> MultiAgentEnv:
    from jaxseq.envs.tabular import TabularAdapter, make_game

    game = make_game(
        params["seed"], num_states=params["states"], num_agents=params["agents"], num_actions=params["actions"]
    )
    return TabularAdapter(env_id, game, max_steps=params["max_steps"])


def _mamujoco_names() -> list[str]:
    from jaxseq.envs.mamujoco_robots import task_names

    return task_names()


def _check_mamujoco(env_id: str, params: dict) -> None:
    if params["obsk"] < 0:
        raise ConfigError(
            "env",
            f"parameter obsk in {env_id!r} must be >= 0 (joints within graph distance k are "
            f"observed), got {params['obsk']}",
        )


def _build_mamujoco(env_id: str, name: str, params: dict) -> MultiAgentEnv:
    from jaxseq.envs.mamujoco import MaMuJoCo

    robot, partition = name.split("-", 1)
    return MaMuJoCo(env_id, robot, partition, obsk=params["obsk"], max_steps=params["max_steps"])


def _host_params(max_steps: int, **params: EnvParam) -> dict[str, EnvParam]:
    """Parameters of a host family: its own, the step limit and the worker pool's."""
    return {
        **params,
        "max_steps": EnvParam(int, max_steps, help="episode step limit (a truncation)"),
        "workers": EnvParam(int, 2, help="workers stepping the host envs"),
        "pool": EnvParam(
            str, "local", ("local", "ray"), "local: worker processes here; ray: Ray actors (the ray extra)"
        ),
        "timeout": EnvParam(float, 60.0, help="seconds a worker may take to answer before it is restarted"),
    }


def _check_host(env_id: str, params: dict, module: str, install: str) -> None:
    import importlib.util

    if params["workers"] < 1 or params["timeout"] <= 0:
        raise ConfigError(
            "env",
            f"{env_id!r} needs workers >= 1 and timeout > 0, got workers={params['workers']}, "
            f"timeout={params['timeout']}",
        )
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    if not found:
        raise ConfigError("env", f"{env_id!r} needs the package {module!r}, which is not installed; {install}")
    if params["pool"] == "ray" and importlib.util.find_spec("ray") is None:
        from jaxseq.envs.workers import RAY_INSTALL

        raise ConfigError("env", f"pool=ray in {env_id!r} needs Ray, which is not installed; {RAY_INSTALL}")


def _bridge(env_id: str, host_spec, factory: tuple, params: dict) -> BridgeEnv:
    from jaxseq.envs.bridge import BridgeEnv

    return BridgeEnv(
        env_id,
        host_spec,
        factory,
        max_steps=params["max_steps"],
        workers=params["workers"],
        timeout=params["timeout"],
        pool=params["pool"],
    )


def _build_pz(env_id: str, name: str, params: dict) -> BridgeEnv:
    from jaxseq.hostenv import pettingzoo_mpe

    kwargs = {
        "n": params["n"],
        "local_ratio": 0.0 if params["reward"] == "shared" else 0.5,
        "max_steps": params["max_steps"],
    }
    return _bridge(env_id, pettingzoo_mpe.spec(params["n"]), (pettingzoo_mpe.__name__, "SimpleSpread", kwargs), params)


#: Installs gfootball's system libraries and builds it (a compiler and Debian's packages needed).
GFOOTBALL_INSTALL = "experiments/install_gfootball.sh"


def _grf_names() -> list[str]:
    from jaxseq.hostenv.football import SCENARIOS

    return sorted(SCENARIOS)


def _sc2_names() -> list[str]:
    from jaxseq.hostenv.starcraft import MAPS

    return list(MAPS)


def _build_grf(env_id: str, name: str, params: dict) -> BridgeEnv:
    from jaxseq.hostenv import football

    return _bridge(env_id, football.spec(name), (football.__name__, "Football", {"scenario": name}), params)


def _build_sc2(env_id: str, name: str, params: dict) -> BridgeEnv:
    from jaxseq.hostenv import starcraft

    host_spec, limit = starcraft.spec(name)
    # SMAC's own episode limit ends the episode as a truncation; max_steps can only lower it.
    params = {**params, "max_steps": min(params["max_steps"], limit)}
    return _bridge(env_id, host_spec, (starcraft.__name__, "StarCraft", {"map_name": name}), params)


#: Every env family by name (the built-in ones, and any :func:`register_env_family` adds).
FAMILIES: dict[str, EnvFamily] = {
    "smax": EnvFamily(
        names=_smax_names,
        params={"max_steps": EnvParam(int, 100, help="episode step limit (a truncation)")},
        build=_build_smax,
        help="JaxMARL SMAX against the heuristic enemy; every map JaxMARL registers",
    ),
    "mpe": EnvFamily(
        names=lambda: sorted(_MPE_TASKS),
        params={
            "n": EnvParam(int, 2, help="agents (and landmarks) in spread; default 3 for spread"),
            "reward": EnvParam(str, "shared", ("shared", "general"), "spread: fully cooperative or general-sum"),
            "actions": EnvParam(
                str, "discrete", ("discrete", "continuous"), "spread: 5 discrete moves or 5 forces in [0, 1]"
            ),
            "max_steps": EnvParam(int, 25, help="episode step limit (a truncation)"),
        },
        build=_build_mpe,
        help="JaxMARL MPE cooperative tasks",
    ),
    "tabular": EnvFamily(
        names=lambda: ["game"],
        params={
            "seed": EnvParam(int, 0, help="draws the random game (jaxseq.envs.tabular.make_game)"),
            "states": EnvParam(int, 4, help="number of states"),
            "agents": EnvParam(int, 3, help="number of agents"),
            "actions": EnvParam(int, 3, help="actions per agent"),
            "max_steps": EnvParam(int, 50, help="episode step limit (a truncation: the game never terminates)"),
        },
        build=_build_tabular,
        help="a random cooperative tabular game with exact evaluation (jaxseq.envs.tabular)",
        check=_check_tabular,
    ),
    "mamujoco": EnvFamily(
        names=_mamujoco_names,
        params={
            "obsk": EnvParam(int, 1, help="observe qpos of the joints within this graph distance of the agent's own"),
            "max_steps": EnvParam(int, 1000, help="episode step limit (a truncation, bootstrapped)"),
        },
        build=_build_mamujoco,
        help="multi-agent MuJoCo on MJX (brax's models): Robot-partition, continuous actions",
        check=_check_mamujoco,
    ),
    "pz": EnvFamily(
        names=lambda: ["simple_spread"],
        params=_host_params(
            25,
            n=EnvParam(int, 3, help="agents (and landmarks)"),
            reward=EnvParam(str, "shared", ("shared", "general"), "fully cooperative or general-sum"),
        ),
        build=_build_pz,
        help="PettingZoo MPE (package mpe2) in worker processes, through the subprocess bridge",
        check=lambda env_id, params: _check_host(env_id, params, "mpe2", "pip install mpe2"),
        host=True,
    ),
    "grf": EnvFamily(
        names=_grf_names,
        # The full game lasts 3000 steps and ends there (a termination); max_steps truncates earlier.
        params=_host_params(3001),
        build=_build_grf,
        help="Google Research Football (gfootball) in worker processes, the left field players as agents",
        check=lambda env_id, params: _check_host(env_id, params, "gfootball", f"run bash {GFOOTBALL_INSTALL}"),
        host=True,
    ),
    "sc2": EnvFamily(
        names=_sc2_names,
        params=_host_params(10_000),
        build=_build_sc2,
        help="StarCraft II through SMAC (StarCraft II and smac installed by you; docs/environments.md)",
        check=lambda env_id, params: _check_host(
            env_id, params, "smac.env", "install StarCraft II and SMAC as docs/environments.md describes"
        ),
        host=True,
    ),
}


def register_env_family(family: str, declaration: EnvFamily, overwrite: bool = False) -> EnvFamily:
    """Make the env ids ``family:name?k=v`` available (``Config.env``, ``jaxseq envs``, the run
    loop), as :func:`jaxseq.algorithms.register` does for algorithms (docs/adding-an-environment.md).

    Checks the declaration first (ValueError naming the bad field). A taken name raises ValueError
    unless ``overwrite``."""
    declaration.validate(family)
    if family in FAMILIES and not overwrite:
        raise ValueError(f"an env family named {family!r} is registered already (pass overwrite=True)")
    FAMILIES[family] = declaration
    return declaration


# Spread's natural default is 3 agents; the other MPE tasks have exactly 2.
_DEFAULT_OVERRIDES = {("mpe", "spread"): {"n": 3}}


def parse_env_id(env_id: str) -> tuple[str, str, dict]:
    """Split and validate ``family:name?k=v&k=v``; returns (family, name, params with defaults)."""
    if not isinstance(env_id, str) or ":" not in env_id:
        raise ConfigError("env", f"{env_id!r} is not of the form family:name; families: {sorted(FAMILIES)}")
    family, rest = env_id.split(":", 1)
    name, _, query = rest.partition("?")
    if family not in FAMILIES:
        raise ConfigError("env", f"unknown family {family!r}; allowed: {sorted(FAMILIES)}")
    fam = FAMILIES[family]
    names = fam.names()
    if name not in names:
        raise ConfigError("env", f"unknown {family} task {name!r}; allowed: {names}")
    params = {k: p.default for k, p in fam.params.items()}
    params.update(_DEFAULT_OVERRIDES.get((family, name), {}))
    seen = set()
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if key in seen:
            raise ConfigError("env", f"parameter {key} is given twice in {env_id!r}")
        seen.add(key)
        if not eq or key not in fam.params:
            raise ConfigError(
                "env", f"bad parameter {item!r} in {env_id!r}; allowed: {sorted(fam.params)} as key=value"
            )
        p = fam.params[key]
        try:
            params[key] = p.kind(value)
        except ValueError:
            raise ConfigError(
                "env", f"parameter {key} in {env_id!r} must be {p.kind.__name__}, got {value!r}"
            ) from None
        if p.allowed is not None and params[key] not in p.allowed:
            raise ConfigError("env", f"parameter {key} in {env_id!r} must be one of {list(p.allowed)}")
    if params.get("max_steps", 1) < 1 or params.get("n", 1) < 1:
        raise ConfigError("env", f"n and max_steps in {env_id!r} must be positive")
    if fam.check is not None:
        fam.check(env_id, params)
    return family, name, params


def make_env(env_id: str) -> AutoReset | BridgeEnv:
    family, name, params = parse_env_id(env_id)
    fam = FAMILIES[family]
    env = fam.build(env_id, name, params)
    return env if fam.host else AutoReset(env)


def list_envs() -> list[tuple[str, str]]:
    """(family:name, description) for every registered env, with its parameters."""
    rows = []
    for family, fam in FAMILIES.items():
        opts = ", ".join(
            f"{k}={p.default}" + (f" {list(p.allowed)}" if p.allowed else "") for k, p in fam.params.items()
        )
        for name in fam.names():
            rows.append((f"{family}:{name}", f"{fam.help}; params: {opts}"))
    return rows

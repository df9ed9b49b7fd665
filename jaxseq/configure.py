"""Building and checking a :class:`~jaxseq.config.Config`: a preset's values with overrides,
resolved for the algorithm chosen (:func:`make_config`, :func:`for_algorithm`), and validation
against the modules that own each choice (:func:`validate`), before anything compiles. A bad value
raises :class:`~jaxseq.errors.ConfigError` naming the field and what is allowed.

The schema itself (:class:`~jaxseq.config.Config`, its fields' types and help) is
:mod:`jaxseq.config`, a leaf every module may import; this module imports the owners of the
choices (the algorithms, nets, schemes, ...), so it sits above them.
"""

from __future__ import annotations

import math
from typing import Any

from jaxseq import distributed, nets, ordering, policies, schemes, state_weights, sweep, update
from jaxseq.algorithms import ALGORITHMS
from jaxseq.config import Config, check_field_names, field_types
from jaxseq.envs import parse_env_id
from jaxseq.errors import ConfigError
from jaxseq.presets import PRESETS


def _choices() -> dict[str, tuple[str, ...]]:
    """Allowed values of the fields with a fixed set, each from the module that owns it."""
    return {
        "shard": distributed.SHARD_MODES,
        "network": nets.NETWORKS,
        "activation": tuple(nets.ACTIVATIONS),
        "sharing": nets.SHARING_MODES,
        "loop_order": schemes.LOOP_ORDERS,
        "critic_fit": schemes.CRITIC_FITS,
        "shared_optimizer": update.SHARED_OPTIMIZERS,
        "lr_schedule": update.LR_SCHEDULES,
        "opspo_sdc_method": state_weights.SDC_METHODS,
        "log_prob_reduce": policies.LOG_PROB_REDUCTIONS,
        "selection_rule": ordering.SELECTION_RULES,
    }


_POSITIVE_INT = (
    "total_steps",
    "num_seeds",
    "num_envs",
    "rollout_length",
    "epochs",
    "num_minibatches",
    "hidden_size",
    "num_layers",
    "sequence_length",
    "updates_per_chunk",
    "eval_envs",
    "eval_episodes",
    "checkpoint_every",
    "omega_n",
    "omega_e",
    "f_e",
    "density_batch",
    "density_hidden",
)


def make_config(preset: str = "default", **overrides: Any) -> Config:
    """The preset's values with ``overrides`` on top. A preset is a paper's settings for every
    algorithm it is run with: its algorithm-specific fields (e.g. A2PO's ``loop_order``) apply to
    the algorithms that read them, and are left at their defaults for another ``algo``
    (:func:`for_algorithm`); an override is always kept, and checked."""
    if preset not in PRESETS:
        raise ConfigError("preset", f"unknown preset {preset!r}; allowed: {sorted(PRESETS)}")
    check_field_names(overrides)
    return for_algorithm(Config(**{**PRESETS[preset], **overrides}), keep=set(overrides))


def for_algorithm(config: Config, keep: set[str] = frozenset()) -> Config:
    """``config`` with every field that only some algorithms read (``Algorithm.fields``,
    ``Scheme.fields``) and ``config.algo`` does not read reset to its default, except the fields
    in ``keep`` (what the user set, which validation then refuses where it does not apply)."""
    alg = ALGORITHMS.get(config.algo)
    if alg is None:
        return config  # validation names the unknown algorithm
    reads = {*alg.fields, *alg.scheme_of.fields}
    declared = {name for a in ALGORITHMS.values() for name in (*a.fields, *a.scheme_of.fields)}
    defaults = Config()
    return config.replace(**{name: getattr(defaults, name) for name in declared - reads - set(keep)})


def validate(config: Config) -> None:
    """Raise ConfigError for any bad or contradictory setting, the env id included (parsed, not
    built). ``make_train`` runs :func:`validate_fields` and parses the env id once itself."""
    validate_fields(config)
    parse_env_id(config.env)


def _check_types(config: Config) -> None:
    for name, kind in field_types().items():
        value = getattr(config, name)
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(name, f"expected {kind.__name__}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise ConfigError(name, f"must be a finite number, got {value!r}")
    for name, allowed in _choices().items():
        if getattr(config, name) not in allowed:
            raise ConfigError(name, f"{getattr(config, name)!r} is not allowed; allowed: {list(allowed)}")
    for name in _POSITIVE_INT:
        if getattr(config, name) < 1:
            raise ConfigError(name, f"must be a positive integer, got {getattr(config, name)}")


def _check_algorithm_fields(config: Config) -> None:
    """The fields one algorithm reads, checked against the declarations of the algorithm chosen."""
    if config.algo not in ALGORITHMS:
        raise ConfigError("algo", f"unknown algorithm {config.algo!r}; allowed: {sorted(ALGORITHMS)}")

    def reads(alg, name):
        return name in alg.fields or name in alg.scheme_of.fields

    # A field that only some algorithms (or their schemes) declare (``Algorithm.fields``,
    # ``Scheme.fields``), set to a non-default value for one that does not read it, is refused:
    # a silently ignored setting is a wrong experiment.
    alg, defaults = ALGORITHMS[config.algo], Config()
    declared = {name for a in ALGORITHMS.values() for name in (*a.fields, *a.scheme_of.fields)}
    for name in sorted(declared):
        if getattr(config, name) != getattr(defaults, name) and not reads(alg, name):
            readers = sorted(a.name for a in ALGORITHMS.values() if reads(a, name))
            raise ConfigError(name, f"applies to {', '.join(readers)} only, got algo={config.algo}")
    # Only OPSPO's objective reads eps2, so a narrow clip_eps (FP3O paper Tab. 7: 0.05) stays valid elsewhere.
    if "opspo_eps2" in alg.fields and not 0.0 < config.opspo_eps2 < config.clip_eps:
        raise ConfigError("opspo_eps2", f"must lie in (0, clip_eps={config.clip_eps}), got {config.opspo_eps2}")


def validate_fields(config: Config) -> None:
    """Every check of :func:`validate` but the env id's."""
    _check_types(config)
    _check_algorithm_fields(config)
    for name in ("eval_every", "absolute_factor", "devices"):
        if getattr(config, name) < 0:
            raise ConfigError(name, f"must be >= 0 (0 disables it), got {getattr(config, name)}")
    if not 0 <= config.seed < 2**32:
        raise ConfigError("seed", f"must lie in [0, 2**32) (jax.random.PRNGKey's range), got {config.seed}")
    if config.adam_eps <= 0:
        raise ConfigError("adam_eps", f"must be > 0, got {config.adam_eps}")
    for name, low, high in (("gamma", 0.0, 1.0), ("gae_lambda", 0.0, 1.0), ("clip_c", 0.0, 1.0)):
        if not low <= getattr(config, name) <= high:
            raise ConfigError(name, f"must lie in [{low:g}, {high:g}], got {getattr(config, name)}")
    if not 0.0 < config.clip_eps < 1.0:
        raise ConfigError("clip_eps", f"must lie in (0, 1), got {config.clip_eps}")
    if not 0.0 <= config.coppo_clip_others < 1.0:
        raise ConfigError("coppo_clip_others", f"must lie in [0, 1) (0: clip_eps / 2), got {config.coppo_clip_others}")
    for name in ("vtrace_clip_rho", "vtrace_clip_c", "density_lr"):
        if getattr(config, name) <= 0:
            raise ConfigError(name, f"must be > 0, got {getattr(config, name)}")
    if config.agent_blocks < 0:
        raise ConfigError("agent_blocks", f"must be >= 0 (0: one agent per block), got {config.agent_blocks}")
    if config.post_layers < 0:
        raise ConfigError("post_layers", f"must be >= 0 (0: none), got {config.post_layers}")
    for name in ("actor_lr", "critic_lr"):
        if getattr(config, name) < 0:
            raise ConfigError(name, f"must be >= 0, got {getattr(config, name)}")
    if config.rollout_length % config.sequence_length:
        raise ConfigError(
            "sequence_length", f"must divide rollout_length={config.rollout_length}, got {config.sequence_length}"
        )
    sequences = config.num_envs * (config.rollout_length // config.sequence_length)
    if sequences % config.num_minibatches:
        raise ConfigError(
            "num_minibatches",
            f"must divide the number of training sequences num_envs * "
            f"rollout_length / sequence_length = {sequences}, got {config.num_minibatches}",
        )
    if config.batch_size > config.total_steps:
        raise ConfigError(
            "total_steps", f"must be at least one batch (num_envs * rollout_length = {config.batch_size})"
        )
    _check_sweep(config)


def _check_sweep(config: Config) -> None:
    """The sweep's fields (:func:`jaxseq.sweep.check`), then every grid point as a config of its own."""
    sweep.check(config)
    if config.sweep:
        for point in sweep.point_configs(config):
            validate_fields(point)


#: Fields only continuous-action envs read.
CONTINUOUS_FIELDS = ("log_prob_reduce", "log_std_init", "ent_coef_continuous")


def check_env_fields(config: Config, spec) -> None:
    """The checks that need the env: blocks within the agent count, continuous-action fields set
    only for continuous-action envs."""
    if config.agent_blocks > spec.num_agents:
        raise ConfigError(
            "agent_blocks",
            f"must be at most the number of agents of {config.env} ({spec.num_agents}), got {config.agent_blocks}",
        )
    if not spec.continuous:
        defaults = Config()
        for name in CONTINUOUS_FIELDS:
            if getattr(config, name) != getattr(defaults, name):
                raise ConfigError(name, f"applies to continuous-action envs only; {config.env} has discrete actions")

"""The compiled trainer: ``make_train(config) -> Trainer``.

One training *update* is: a rollout of ``rollout_length`` steps in ``num_envs`` vmapped envs
(:mod:`jaxseq.rollout`), the estimators' inputs, the actor update of the algorithm's scheme
(:mod:`jaxseq.schemes`), then the critic fit (:mod:`jaxseq.engine`). A *chunk* is
``updates_per_chunk`` updates in one ``lax.scan``: the unit the Python loop (:mod:`jaxseq.run`)
calls, logs, evaluates and checkpoints between.

Seeds are a leading vmapped axis of the whole :class:`~jaxseq.types.TrainState`:
``Trainer.init(key)`` makes ``num_seeds`` states from one key, and ``Trainer.chunk`` runs them all
in one program. ``Trainer(key)`` is the whole run as one program (PureJaxRL style).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxseq import distributed, normalization, rollout, sweep, update
from jaxseq.algorithms import ALGORITHMS, Algorithm
from jaxseq.config import Config
from jaxseq.configure import check_env_fields, validate_fields
from jaxseq.engine import Engine, make_engine
from jaxseq.envs import Env, make_env
from jaxseq.metrics import FINITE
from jaxseq.types import Rollout, TrainState

__all__ = ["Trainer", "TrainState", "Rollout", "make_train"]


@dataclasses.dataclass(frozen=True)
class Trainer:
    """The compiled pieces of one configuration. Build it with :func:`make_train`."""

    config: Config
    algorithm: Algorithm
    env: Env  # AutoReset or BridgeEnv
    engine: Engine
    #: The device mesh the members (or each member's envs) are split over; None on one device.
    mesh: Mesh | None = None
    #: Python-side count of how often the chunk program was traced (= compiled).
    trace_counter: list = dataclasses.field(default_factory=lambda: [0])
    _evaluators: dict = dataclasses.field(default_factory=dict, repr=False)

    # Shortcuts for notebooks and tests.
    actor = property(lambda self: self.engine.actor)
    critic = property(lambda self: self.engine.critic)
    policy = property(lambda self: self.engine.policy)
    state_weights = property(lambda self: self.engine.state_weights)

    @property
    def sdc_method(self) -> str:
        """OPSPO's state weights for this config: "bch" (learned omega-nets), "wis" or "none"."""
        return self.engine.algorithm.state_weights

    # -- construction -------------------------------------------------------------------------
    @staticmethod
    def _init_keys(key: jax.Array) -> jax.Array:
        """A member's key split into (actor, critic, env, the state's own key)."""
        return jax.random.split(key, 4)

    def init_networks(self, key: jax.Array) -> tuple[Any, Any, dict]:
        """(actor params, critic params, the state weights' extras) of one member from its key: every
        part of the initial state that the orthogonal initialiser's host QR (a callback) touches."""
        eng = self.engine
        k_actor, k_critic, _, key = self._init_keys(key)
        actor_params = eng.actor.init(k_actor, eng.spec.obs_dim)
        critic_params = eng.critic.init(k_critic, eng.critic_in_dim)
        return actor_params, critic_params, eng.state_weights.init(jax.random.fold_in(key, 1), actor_params)

    def init_one(self, key: jax.Array, networks: tuple[Any, Any, dict]) -> TrainState:
        """One member's initial state from its key and :meth:`init_networks` of the same key."""
        eng, cfg = self.engine, self.config
        actor_params, critic_params, weights = networks
        _, _, k_env, key = self._init_keys(key)
        env_state, obs = jax.vmap(self.env.reset)(jax.random.split(k_env, cfg.num_envs))
        return TrainState(
            actor_params=actor_params,
            critic_params=critic_params,
            actor_opt=eng.actor_optimizer.init(actor_params),
            critic_opt=eng.critic_tx.init(critic_params),
            value_norm=normalization.init(),
            env_state=env_state,
            obs=obs,
            start=jnp.ones((cfg.num_envs,), bool),
            actor_carry=eng.actor.init_carry((cfg.num_envs,)),
            critic_carry=eng.critic.init_carry((cfg.num_envs,)),
            key=key,
            update=jnp.zeros((), jnp.int32),
            extra={**eng.algorithm.scheme.init_extra(eng.num_agents), **weights},
            hyper={},
        )

    def init_members(self, key: jax.Array) -> TrainState:
        """The members' states, stacked [M] and not yet placed on the mesh: ``num_seeds`` states
        from ``key``, repeated for every grid point of the sweep, with the points' values in
        ``hyper`` (member g * S + s = seed s of grid point g; :mod:`jaxseq.sweep`).

        Two compiled programs (op by op, a fresh configuration's initial state took 4-5 s of tiny
        compilations on a CPU, an MJX reset about 25 s): the networks, whose orthogonal initialiser
        runs its QR on the host (:func:`jaxseq.nets.orthogonal`), and the rest (the env reset,
        optimiser states), which has no host callback and so is kept by the compilation cache.
        """
        return self._compiled_init(key)

    @functools.cached_property
    def _compiled_init(self) -> Callable[[jax.Array], TrainState]:
        networks = jax.jit(lambda key: jax.vmap(self.init_networks)(self._member_keys(key)))
        rest = jax.jit(self._stacked_init)
        return lambda key: rest(key, networks(key))

    def _member_keys(self, key: jax.Array) -> jax.Array:
        return jax.random.split(key, self.config.num_seeds)

    def _stacked_init(self, key: jax.Array, networks: tuple) -> TrainState:
        state = jax.vmap(self.init_one)(self._member_keys(key), networks)
        # Strong dtypes everywhere (JaxMARL's reset leaves weakly typed ints), so the state the chunk
        # returns has the same types as this one and the chunk compiles once.
        state = jax.tree.map(lambda x: x.astype(x.dtype), state)
        if not self.config.sweep:
            return state
        points = len(sweep.grid(self.config))
        state = jax.tree.map(lambda x: jnp.concatenate([x] * points), state)
        return state.replace(hyper={k: jnp.asarray(v) for k, v in sweep.member_values(self.config).items()})

    def init(self, key: jax.Array) -> TrainState:
        """The members' states from ``key`` (:meth:`init_members`), placed on the mesh."""
        return self.place(self.init_members(key))

    def place(self, state: TrainState) -> TrainState:
        """A member-stacked state (fresh or restored) on the mesh; as it is on one device."""
        return state if self.mesh is None else distributed.place(state, distributed.state_shardings(self.mesh, state))

    def compile_chunk(self, state: TrainState):
        """:attr:`chunk` compiled ahead of time for ``state``'s shapes and shardings (the run loop
        reads its memory analysis before running it)."""
        return self.chunk.lower(state).compile()

    def abstract_state(self, key: jax.Array):
        """Shapes, dtypes and (on a mesh) shardings of :meth:`init`'s state, for restoring checkpoints."""
        abstract = jax.eval_shape(self.init_members, key)
        if self.mesh is None:
            return abstract
        return distributed.sharded_abstract(abstract, distributed.state_shardings(self.mesh, abstract))

    def with_values(self, values: dict) -> "Trainer":
        """This trainer with one member's swept ``values`` (traced scalars, ``TrainState.hyper``)
        in place of its config's numbers; itself without a sweep."""
        if not values:
            return self
        config = self.config.replace(**values)
        eng = self.engine
        engine = make_engine(config, eng.spec, eng.algorithm, eng.trace_units, clip_grads=self.config.max_grad_norm > 0)
        return dataclasses.replace(self, config=config, engine=engine)

    # -- one update ---------------------------------------------------------------------------
    def rollout(self, ts: TrainState) -> tuple[TrainState, Rollout, dict]:
        return rollout.rollout(self.with_values(ts.hyper).engine, self.env, ts)

    def update(self, ts: TrainState) -> tuple[TrainState, dict]:
        """One training update: a rollout, then :meth:`learn` on it."""
        ts, batch, ep_stats = self.rollout(ts)
        ts, metrics = self.learn(ts, batch)
        return ts, {**metrics, **ep_stats}

    def learning_values(self, ts: TrainState) -> dict:
        """The member's swept values (``ts.hyper``) with ``actor_lr`` and ``critic_lr`` scaled for
        update ``ts.update`` by ``lr_schedule`` (:func:`jaxseq.update.linear_lr_scale`); ``ts.hyper`` itself
        under the constant schedule. Adam's state does not depend on the step size, so an optimiser
        built with the scaled rate is the scheduled one."""
        cfg = self.config
        if cfg.lr_schedule == "constant":
            return ts.hyper
        scale = update.linear_lr_scale(ts.update, cfg.total_updates)
        return {**ts.hyper, **{k: ts.hyper.get(k, getattr(cfg, k)) * scale for k in ("actor_lr", "critic_lr")}}

    def learn(self, ts: TrainState, batch: Rollout) -> tuple[TrainState, dict]:
        """The actor update of the algorithm's scheme, then the critic, on one batch (at the
        learning rates of update ``ts.update``). ``batch`` must have been collected by
        ``ts.actor_params`` (on-policy, as :meth:`update` does): the sequential scheme starts from
        a log ratio of 0 over the behaviour policy instead of recomputing it."""
        eng = self.with_values(self.learning_values(ts)).engine
        est = eng.returns_inputs(batch, ts.value_norm)
        key, k_actor, k_critic = jax.random.split(ts.key, 3)
        data = eng.training_data(batch)
        ts = ts.replace(extra=eng.state_weights.record(ts.extra, batch, ts.obs, ts.actor_params))
        ts, targets, info = eng.algorithm.scheme.run(eng, ts, data, est, k_actor)
        if self.config.critic_fit == "once":
            # Critic: fitted once, after the actors, on the targets the actors' advantages came from
            # (with "per-unit" the scheme fitted it after each unit).
            ts, c_info = eng.fit_critic(ts, data, est["values"], targets, k_critic)
            info = {**info, **c_info}
        return ts.replace(key=key, update=ts.update + 1), info

    # -- chunks and evaluation ----------------------------------------------------------------
    def chunk_one(self, ts: TrainState) -> tuple[TrainState, dict]:
        """``updates_per_chunk`` updates of one seed; metrics reduced to one value each."""
        ts, m = jax.lax.scan(lambda s, _: self.update(s), ts, None, length=self.config.updates_per_chunk)
        episodes = m["episodes"].sum()
        out = {k: v.mean(axis=0) for k, v in m.items() if k not in rollout.EPISODE_SUMS}  # mean over updates
        out["episodes"] = episodes
        safe = jnp.maximum(episodes, 1.0)
        nan = jnp.float32(jnp.nan)
        out["return_mean"] = jnp.where(episodes > 0, m["return_sum"].sum() / safe, nan)
        out["episode_length"] = jnp.where(episodes > 0, m["length_sum"].sum() / safe, nan)
        out["win_rate"] = jnp.where(episodes > 0, m["win_sum"].sum() / safe, nan)
        # The finite-value guard, reduced in the program: one bool per field of the train state, so
        # that a checkpoint the guard lets through is finite in every float leaf (parameters,
        # optimiser moments, the value normaliser's statistics, density nets, env states).
        out.update({f"{FINITE}{name}": _all_finite(getattr(ts, name)) for name in ts.__dataclass_fields__})
        return ts, out

    def evaluate_one(self, ts: TrainState, episodes: int | None = None) -> dict:
        return rollout.greedy_evaluation(self.with_values(ts.hyper).engine, self.env, ts, episodes)

    def over_members(self, fn: Callable) -> Callable:
        """``fn`` of one member's state -> the same of the [M]-stacked state: vmapped, and on a mesh
        sharded (``shard_map`` over the member axis, or the env axis split for XLA to partition)."""
        batched = distributed.member_map(fn)
        if self.mesh is None:
            return batched
        if self.config.shard == "members":
            spec = P(distributed.MEMBER_AXIS)
            # No collectives inside, so the replication checks (whose scan carries would need
            # marking as varying over the mesh) have nothing to protect.
            return jax.shard_map(batched, mesh=self.mesh, in_specs=spec, out_specs=spec, check_vma=False)

        def data_parallel(ts):
            out = batched(ts)
            if not isinstance(out, tuple):
                return out
            # The state leaves as it came in, so every chunk sees one layout and compiles once.
            state, metrics = out
            return jax.lax.with_sharding_constraint(state, distributed.state_shardings(self.mesh, state)), metrics

        return data_parallel

    def _traced_chunk(self, ts: TrainState) -> tuple[TrainState, dict]:
        self.trace_counter[0] += 1
        return self.over_members(self.chunk_one)(ts)

    @functools.cached_property
    def chunk(self) -> Callable[[TrainState], tuple[TrainState, dict]]:
        """The compiled chunk for all seeds: [S]-stacked state -> (state, metrics [S]).

        The input is not donated: the run loop keeps the last finished state until the next chunk
        has finished, so an interrupt mid-chunk can still checkpoint it.
        """
        return jax.jit(self._traced_chunk)

    @functools.cached_property
    def evaluate(self) -> Callable[[TrainState], dict]:
        """Compiled greedy evaluation of ``eval_episodes`` episodes for every seed: [S]-stacked
        state -> metrics [S] (per-episode values [S, E'])."""
        return self.evaluator(self.config.eval_episodes)

    def evaluator(self, episodes: int) -> Callable[[TrainState], dict]:
        """Compiled greedy evaluation of ``episodes`` episodes per seed (one program per count)."""
        if episodes not in self._evaluators:
            self._evaluators[episodes] = jax.jit(self.over_members(lambda ts: self.evaluate_one(ts, episodes)))
        return self._evaluators[episodes]

    def __call__(self, key: jax.Array) -> tuple[TrainState, dict]:
        """The whole run as one program (PureJaxRL style): ``num_chunks`` chunks of every seed,
        from the state :meth:`init` draws.

        Returns the final [S]-stacked state and metrics stacked [num_chunks, S].
        """

        def run(ts):
            return jax.lax.scan(
                lambda s, _: self.over_members(self.chunk_one)(s), ts, None, length=self.config.num_chunks
            )

        return jax.jit(run)(self.init(key))


def make_train(config: Config, *, trace_units: bool = False) -> Trainer:
    """Validate ``config`` (before anything compiles; the env id is parsed once, here) and assemble
    the trainer. ``trace_units`` turns on the schemes' conformance hook (:attr:`Engine.trace_units`)."""
    validate_fields(config)
    algorithm = ALGORITHMS[config.algo]
    resolved = algorithm.resolve(config)
    env = make_env(config.env)
    check_env_fields(config, env.spec)
    mesh = distributed.make_mesh(config)
    engine = make_engine(config, env.spec, resolved, trace_units, clip_grads=config.max_grad_norm > 0)
    return Trainer(config, algorithm, env, engine, mesh)


def _all_finite(tree) -> jax.Array:
    """One bool: every float leaf of ``tree`` is finite (True for a tree without one)."""
    checks = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)

"""Host environments inside compiled programs: a worker pool entered by ordered host callbacks.

:class:`BridgeEnv` has the interface of :class:`~jaxseq.envs.base.AutoReset` (``reset(key)``,
``step(key, state, actions)``, vmappable, jittable), but the environment runs in worker processes
(:mod:`jaxseq.hostenv.worker`) while the policy, the estimators and the update stay compiled.

- Every ``reset``/``step`` is one ``jax.experimental.io_callback(ordered=True)`` for the whole
  batch: under ``vmap`` (envs, seeds, any nesting) a ``custom_vmap`` rule flattens the batch axes
  into one host call, which the pool splits across its workers; they step in parallel.
- The env state's ``inner`` is a :class:`HostHandle`: ``[token, instance]`` int32 (the pool's
  random token and the host instance's id) and the observation last returned. An instance the
  pool does not hold (lost with a crashed worker, or restored from another process's checkpoint)
  gets a fresh episode: its transition is a truncation with zero reward whose final observation
  is the last one returned. One transition per env per step, always: none dropped, none
  duplicated.
- Auto-reset happens in the worker, with the same semantics as ``AutoReset``: terminated and
  truncated kept apart, the true final observation kept in ``Step.final_obs``.
- Each ``reset`` call site in a traced program owns one group of instances; the program's later
  calls at that site (e.g. every evaluation) reset the same instances.
- A worker that raises, dies or does not answer within ``timeout`` seconds is reported (a
  ``BridgeWarning`` with the env id, the worker and its traceback or exit status, also kept in
  ``pool.events``), killed and restarted; the episodes it held end as truncated and the run goes
  on. A replacement that fails again at once raises :class:`WorkerError`.
- Finished episodes' behaviour metrics (e.g. GRF goals) are kept host-side in ``pool.episodes``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import os
import shutil
import tempfile
import threading
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.custom_batching import custom_vmap
from jax.experimental import io_callback

from jaxseq.envs.base import EnvSpec, EnvState, Observation, Step, Transition, record_step
from jaxseq.envs.workers import STARTUP_SECONDS, Worker, WorkerFailure, start_worker
from jaxseq.hostenv import HostObs, HostSpec


@struct.dataclass
class HostHandle:
    """A bridge env's inner state. handle: [2] int32, the pool's token and the instance id;
    obs: the observation last returned (the final observation of a lost episode)."""

    handle: jax.Array
    obs: Observation


class WorkerError(RuntimeError):
    """A worker failed again right after its restart; the run cannot go on."""


class BridgeWarning(UserWarning):
    """A worker crashed, raised or hung and was restarted."""


@dataclasses.dataclass(frozen=True)
class WorkerEvent:
    """One failure of a worker: ``kind`` is "exception", "crash" or "hang"; ``detail`` the
    traceback, or the exit status and the tail of its stderr."""

    env_id: str
    worker: int
    kind: str
    detail: str
    instances: tuple[int, ...]


class WorkerPool:
    """Workers holding host-environment instances; see the module docstring.

    factory: ``(module, function, kwargs)`` building one instance in a worker.
    workers: workers shared by the instances; instance i lives on worker i mod workers.
    pool: "local" (processes of this machine) or "ray" (Ray actors; :mod:`jaxseq.envs.workers`).
    """

    def __init__(
        self,
        env_id: str,
        factory: tuple,
        max_steps: int,
        workers: int,
        timeout: float,
        pool: str = "local",
        keep_episodes: int = 100_000,
    ):
        self.env_id, self.factory, self.pool = env_id, factory, pool
        self.max_steps, self.num_workers, self.timeout = max_steps, workers, timeout
        self.token = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
        self.events: list[WorkerEvent] = []
        self.episodes: collections.deque = collections.deque(maxlen=keep_episodes)
        self._log_dir = tempfile.mkdtemp(prefix="jaxseq-bridge-")
        self._procs: dict[int, Worker] = {}
        self._next_instance = 0
        self._sites: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    # -- processes ---------------------------------------------------------------------------
    def worker_of(self, instance: int) -> int:
        return instance % self.num_workers

    def process(self, worker: int) -> Worker:
        if worker not in self._procs:
            self._procs[worker] = start_worker(self.pool, self._log_dir, worker)
            self._procs[worker].send(("init", self.factory, self.max_steps))
            self._procs[worker].receive(max(self.timeout, STARTUP_SECONDS))
        return self._procs[worker]

    def _restart(self, worker: int, failure: WorkerFailure, instances: list[int]) -> None:
        event = WorkerEvent(self.env_id, worker, failure.kind, failure.detail, tuple(instances))
        self.events.append(event)
        warnings.warn(
            f"{self.env_id}: worker {worker} {failure.kind} (instances {list(instances)}); restarted, "
            f"its episodes end as truncated.\n{failure.detail}",
            BridgeWarning,
            stacklevel=2,
        )
        self._procs.pop(worker).kill()

    def _request(self, kind: str, ids: np.ndarray, *per_instance: np.ndarray) -> dict[int, tuple[np.ndarray, dict]]:
        """Send each worker its share of the batch, then collect; a failed worker is restarted
        and asked again (its instances are then new: lost). Returns {worker: (positions, reply)}."""
        owner = ids % self.num_workers  # worker_of, for the whole batch
        pending = {int(w): np.flatnonzero(owner == w) for w in np.unique(owner)}
        replies, retries = {}, collections.Counter()
        while pending:
            sent = {}
            for w, pos in pending.items():
                try:
                    self.process(w).send((kind, ids[pos].tolist(), *(a[pos] for a in per_instance)))
                    sent[w] = pos
                except (WorkerFailure, OSError) as e:
                    self._fail(w, e, ids[pos], retries)
            pending = {w: pos for w, pos in pending.items() if w not in sent}
            for w, pos in sent.items():
                try:
                    replies[w] = (pos, self._procs[w].receive(self.timeout))
                except WorkerFailure as e:
                    self._fail(w, e, ids[pos], retries)
                    pending[w] = pos
        return replies

    def _fail(self, worker: int, error: Exception, instances: np.ndarray, retries: collections.Counter) -> None:
        failure = error if isinstance(error, WorkerFailure) else WorkerFailure("crash", repr(error))
        retries[worker] += 1
        if retries[worker] > 2:
            raise WorkerError(
                f"{self.env_id}: worker {worker} failed {retries[worker]} times in a row "
                f"({failure.kind}):\n{failure.detail}"
            )
        if worker in self._procs:
            self._restart(worker, failure, instances.tolist())

    # -- the batched environment -------------------------------------------------------------
    def _instances(self, site: int | None, count: int) -> np.ndarray:
        if site is not None and site in self._sites and len(self._sites[site]) == count:
            return self._sites[site]
        ids = np.arange(self._next_instance, self._next_instance + count, dtype=np.int64)
        self._next_instance += count
        if site is not None:
            self._sites[site] = ids
        return ids

    def reset(self, site: int, seeds: np.ndarray) -> tuple[np.ndarray, HostObs]:
        """Start an episode in each instance of call site ``site``. seeds [K] -> handles [K, 2], obs."""
        with self._lock:
            ids = self._instances(site, len(seeds))
            out = self._gather(ids, self._request("reset", ids, seeds), ("obs",))
            return self._handles(ids), out["obs"]

    def step(self, handles: np.ndarray, seeds: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, dict]:
        """One transition per env. handles [K, 2], seeds [K], actions [K, N(, A)]. Returns the new
        handles and the workers' fields in batch order (``lost`` marks fresh instances, whose
        ``final`` the caller replaces with the last observation it holds)."""
        with self._lock:
            ids = handles[:, 1].astype(np.int64)
            foreign = handles[:, 0] != self.token
            ids[foreign] = self._instances(None, int(foreign.sum()))
            replies = self._request("step", ids, seeds, actions)
            out = self._gather(ids, replies, ("obs", "final", "reward", "terminated", "truncated", "won", "lost"))
            for _, reply in replies.values():
                self.episodes.extend(reply["episodes"])
            return self._handles(ids), out

    def _handles(self, ids: np.ndarray) -> np.ndarray:
        return np.stack([np.full(len(ids), self.token), ids], axis=1).astype(np.int32)

    @staticmethod
    def _gather(ids: np.ndarray, replies: dict, fields: tuple[str, ...]) -> dict:
        """Reassemble the workers' replies in batch order."""
        out = {}
        for name in fields:
            parts = [(pos, reply[name]) for pos, reply in replies.values()]
            first = parts[0][1]
            if isinstance(first, HostObs):
                buf = HostObs(*(np.empty((len(ids),) + f.shape[1:], f.dtype) for f in first))
                for pos, part in parts:
                    for b, f in zip(buf, part):
                        b[pos] = f
            else:
                buf = np.empty((len(ids),) + first.shape[1:], first.dtype)
                for pos, part in parts:
                    buf[pos] = part
            out[name] = buf
        return out

    def close(self) -> None:
        for proc in self._procs.values():
            proc.close()
        self._procs.clear()
        shutil.rmtree(self._log_dir, ignore_errors=True)


def host_batched(fn: Callable[..., tuple], out_shapes: Callable[[int], tuple]) -> Callable[..., tuple]:
    """Make ``fn`` (host arrays with a leading batch axis K -> tuple of arrays [K, ...]) callable
    from JAX on one env's arrays, under any nesting of ``vmap``: every batch axis is flattened into
    one ordered ``io_callback``. ``out_shapes(K)`` gives the outputs' ``ShapeDtypeStruct``s."""

    def flat_call(*args):
        return io_callback(fn, out_shapes(args[0].shape[0]), *args, ordered=True)

    def broadcast(axis_size, in_batched, args):
        return [a if b else jnp.broadcast_to(a, (axis_size,) + a.shape) for a, b in zip(args, in_batched)]

    @custom_vmap
    def batched(*args):
        return flat_call(*args)

    @batched.def_vmap
    def _batched_rule(axis_size, in_batched, *args):
        args = broadcast(axis_size, in_batched, args)
        out = batched(*(a.reshape((-1,) + a.shape[2:]) for a in args))
        return tuple(x.reshape((axis_size, -1) + x.shape[1:]) for x in out), (True,) * len(out)

    @custom_vmap
    def single(*args):
        return tuple(x[0] for x in batched(*(a[None] for a in args)))

    @single.def_vmap
    def _single_rule(axis_size, in_batched, *args):
        out = batched(*broadcast(axis_size, in_batched, args))
        return out, (True,) * len(out)

    return single


class BridgeEnv:
    """A host environment seen as a JAX env (``AutoReset``'s interface); see the module docstring.

    The worker pool starts at the first reset that runs (not when the env is made or traced).
    """

    def __init__(
        self,
        env_id: str,
        host_spec: HostSpec,
        factory: tuple,
        max_steps: int,
        workers: int,
        timeout: float,
        pool: str = "local",
    ):
        self.host_spec, self.factory = host_spec, factory
        self.spec = EnvSpec(
            env_id=env_id,
            num_agents=host_spec.num_agents,
            obs_dim=host_spec.obs_dim,
            state_dim=host_spec.state_dim,
            num_actions=host_spec.num_actions,
            max_steps=max_steps,
            has_win=host_spec.has_win,
            obs_widths=host_spec.obs_widths,
            action_counts=host_spec.action_counts,
            continuous=host_spec.continuous,
        )
        self._pool_args = (env_id, factory, max_steps, workers, timeout, pool)
        self._pool: WorkerPool | None = None
        self._failures_taken = 0
        self._sites = itertools.count()

    @property
    def pool(self) -> WorkerPool:
        if self._pool is None:
            self._pool = WorkerPool(*self._pool_args)
        return self._pool

    records_episodes = True

    @property
    def episode_metrics(self) -> tuple[str, ...]:
        """The behaviour metrics of the episode records (e.g. GRF goals), for the run loop."""
        return tuple(self.host_spec.episode_metrics)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def take_episodes(self) -> list[dict]:
        """The records of the episodes that ended since the last call (instance, length, return
        and the environment's behaviour metrics), oldest first."""
        if self._pool is None:
            return []
        records = list(self._pool.episodes)
        self._pool.episodes.clear()
        return records

    def take_failures(self) -> list[dict]:
        """The worker failures since the last call (:class:`WorkerEvent` as a dict, the detail's
        last 500 characters), oldest first; ``pool.events`` keeps them all."""
        if self._pool is None:
            return []
        new = self._pool.events[self._failures_taken :]
        self._failures_taken += len(new)
        return [{**dataclasses.asdict(e), "instances": list(e.instances), "detail": e.detail[-500:]} for e in new]

    # -- shapes --------------------------------------------------------------------------------
    def _obs_shapes(self, k: int) -> tuple:
        s = self.spec
        return (
            jax.ShapeDtypeStruct((k, s.num_agents, s.obs_dim), jnp.float32),
            jax.ShapeDtypeStruct((k, s.num_agents, s.state_dim), jnp.float32),
            jax.ShapeDtypeStruct((k, s.num_agents, s.num_actions), jnp.bool_),
            jax.ShapeDtypeStruct((k, s.num_agents), jnp.bool_),
        )

    def _handle_shape(self, k: int) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((k, 2), jnp.int32)

    def _step_shapes(self, k: int) -> tuple:
        flag = jax.ShapeDtypeStruct((k,), jnp.bool_)
        return (
            self._handle_shape(k),
            *self._obs_shapes(k),
            *self._obs_shapes(k),
            jax.ShapeDtypeStruct((k, self.spec.num_agents), jnp.float32),
            flag,
            flag,
            flag,
            flag,
        )

    # -- host calls ----------------------------------------------------------------------------
    def _host_reset(self, site: int, seeds: np.ndarray) -> tuple:
        handles, obs = self.pool.reset(site, np.asarray(seeds))
        return (handles, *obs)

    def _host_step(self, handles: np.ndarray, seeds: np.ndarray, actions: np.ndarray) -> tuple:
        handles, out = self.pool.step(np.asarray(handles), np.asarray(seeds), np.asarray(actions))
        return (
            handles,
            *out["obs"],
            *out["final"],
            out["reward"],
            out["terminated"],
            out["truncated"],
            out["won"],
            out["lost"],
        )

    # -- the env interface ---------------------------------------------------------------------
    @staticmethod
    def _seed(key: jax.Array) -> jax.Array:
        return jax.random.bits(key, (), jnp.uint32)

    def reset(self, key: jax.Array) -> tuple[EnvState, Observation]:
        site = next(self._sites)
        call = host_batched(
            functools.partial(self._host_reset, site), lambda k: (self._handle_shape(k), *self._obs_shapes(k))
        )
        handle, *obs = call(self._seed(key))
        obs = Observation(*obs)
        zero = jnp.zeros((), jnp.float32)
        return EnvState(HostHandle(handle, obs), zero, jnp.zeros((), jnp.int32)), obs

    def step(self, key: jax.Array, state: EnvState, actions: jax.Array) -> tuple[EnvState, Step]:
        call = host_batched(self._host_step, self._step_shapes)
        dtype = jnp.float32 if self.spec.continuous else jnp.int32
        handle, *out = call(state.inner.handle, self._seed(key), actions.astype(dtype))
        obs, final = Observation(*out[0:4]), Observation(*out[4:8])
        reward, terminated, truncated, won, lost = out[8:]
        final = jax.tree.map(lambda last, new: jnp.where(lost, last, new), state.inner.obs, final)
        tr = Transition(next_obs=final, reward=reward, terminated=terminated, truncated=truncated, won=won)
        return record_step(state, HostHandle(handle, obs), tr, obs)

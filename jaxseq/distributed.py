"""Devices and hosts, on JAX's own runtime: the mesh a run is sharded over, placing the train state
on it, gathering results from it, and ``jax.distributed`` start-up.

Two ways to split a run over the devices of a :class:`jax.sharding.Mesh` (``Config.shard``):

- ``"members"``: the member axis (grid points x seeds, the train state's leading axis) is split;
  each device runs its members' whole program (``jax.shard_map`` of the vmapped chunk), with no
  communication. The members must divide evenly over the devices.
- ``"envs"``: data parallel. Every member's env batch (axis 1 of the env state, observations and
  carries) is split over the devices and everything else is replicated; XLA's partitioner
  (GSPMD) inserts the reductions over devices that the batch means and gradients need.

Several hosts: :func:`initialize` calls ``jax.distributed.initialize`` (automatic under SLURM,
Open MPI or on TPU; explicit with a coordinator address); ``jax.devices()`` is then every host's
devices, each process holds its members' shards, and :func:`gather` brings results to every host.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxseq.errors import ConfigError

SHARD_MODES = ("members", "envs")
MEMBER_AXIS = "members"
ENV_AXIS = "envs"
#: TrainState fields with an env axis (axis 1, after the member axis).
ENV_FIELDS = ("env_state", "obs", "start", "actor_carry", "critic_carry")


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None, timeout: int = 300
):
    """Join a multi-process run before anything touches a device, waiting at most ``timeout``
    seconds for every process. Without arguments JAX reads the cluster from the environment (SLURM,
    Open MPI, TPU). CPU processes talk through gloo."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout,
    )


def is_main_process() -> bool:
    """True in the process that writes the run folder (process 0)."""
    return jax.process_index() == 0


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, at_most + 1) if n % d == 0)


def mesh_size(config, available: int, processes: int = 1) -> int:
    """The number of devices the run uses: ``config.devices`` (0: all ``available`` that the split
    axis allows). ConfigError naming ``devices`` if it is more than exist or does not divide."""
    axis, length = (
        ("members (grid points x seeds)", config.num_members)
        if config.shard == "members"
        else ("num_envs", config.num_envs)
    )
    if config.devices > available:
        raise ConfigError("devices", f"{config.devices} requested, {available} available")
    n = config.devices or (available if processes > 1 else _largest_divisor(length, available))
    if length % n:
        raise ConfigError("devices", f"{n} devices must divide the {axis} = {length}; choose a divisor of {length}")
    if n % processes:
        raise ConfigError("devices", f"{n} devices cannot be split over {processes} processes evenly")
    return n


def make_mesh(config) -> Mesh | None:
    """The run's mesh, or None when it runs on one device (the program is then unsharded)."""
    devices = jax.devices()
    n = mesh_size(config, len(devices), jax.process_count())
    if n == 1:
        return None
    # Each process's devices stay together, so a process's members are contiguous.
    chosen = sorted(devices, key=lambda d: (d.process_index, d.id))[:n]
    return Mesh(np.array(chosen), (MEMBER_AXIS if config.shard == "members" else ENV_AXIS,))


def state_shardings(mesh: Mesh, state):
    """A sharding per leaf of a member-stacked TrainState (or its abstract) on ``mesh``."""
    if MEMBER_AXIS in mesh.axis_names:
        return jax.tree.map(lambda _: NamedSharding(mesh, P(MEMBER_AXIS)), state)
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P(None, ENV_AXIS))
    fields = {name: getattr(state, name) for name in state.__dataclass_fields__}
    return state.replace(
        **{
            name: jax.tree.map(lambda _, s=(split if name in ENV_FIELDS else replicated): s, value)
            for name, value in fields.items()
        }
    )


def place(tree, shardings):
    """Put a host-complete ``tree`` (every process holds all of it) onto the mesh."""
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)

    def put(x, sharding):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x
        full = np.asarray(x)
        return jax.make_array_from_callback(full.shape, sharding, lambda index: full[index])

    return jax.tree.map(put, tree, shardings)


def broadcast_text(text: str) -> str:
    """Process 0's ``text`` on every process (e.g. the run folder it created)."""
    if jax.process_count() == 1:
        return text
    data = np.zeros(4096, np.uint8)
    raw = text.encode()[:4096]
    data[: len(raw)] = np.frombuffer(raw, np.uint8)
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(data))).rstrip(b"\0").decode()


def barrier(name: str) -> None:
    """Wait until every process reaches ``name`` (nothing to wait for in one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def gather(tree):
    """Every leaf as a complete NumPy array on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def sharded_abstract(abstract, shardings):
    """``abstract`` (from ``jax.eval_shape``) with each leaf's sharding, for restoring onto the mesh."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def device_memory() -> int:
    """Bytes one device can hold: its allocator's limit (GPU, TPU), or on CPU the host's memory
    shared by the process's devices."""
    stats = jax.local_devices()[0].memory_stats()
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // jax.local_device_count()


def program_bytes(compiled) -> int:
    """Device memory of a compiled program (per device when sharded): arguments, outputs and
    temporaries, less what outputs reuse of the arguments."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def check_memory(needed: int, members_per_device: int, limit: int, field: str, sizes: str = "") -> str:
    """A line on the program's memory per member; ConfigError naming ``field`` (``num_seeds`` or
    ``sweep``) with how many members would fit when ``needed`` bytes exceed ``limit``, or, when not
    even one fits, what to lower (``sizes``: the run's sizes with their values)."""
    per_member = needed / members_per_device
    mib = 2.0**20
    line = (
        f"program memory: {needed / mib:.1f} MiB per device, {per_member / mib:.2f} MiB per member "
        f"({members_per_device} member{'s' * (members_per_device != 1)} per device; "
        f"a device holds {limit / mib:.0f} MiB)"
    )
    if needed > limit:
        fit = int(limit // per_member)
        advice = (
            f"about {fit} members per device would fit (members = grid points x seeds)"
            if fit
            else f"not even one member fits: lower {sizes or 'num_envs, rollout_length or updates_per_chunk'}"
        )
        raise ConfigError(
            field,
            f"the program needs {needed / mib:.1f} MiB per device but a device holds {limit / mib:.1f} MiB; {advice}",
        )
    return line


def member_map(fn: Callable) -> Callable:
    """``fn`` of one member's state over a stacked state [M, ...]: ``jax.vmap(fn)``, or where M = 1
    (one seed, or one member per device) ``fn`` on the member itself, its outputs given the axis
    back. The same numbers up to float rounding; on CPU the vmap over an axis of one made the SMAX
    2s3z iteration 1.17x slower (docs/performance.md, second round)."""
    batched = jax.vmap(fn)

    def mapped(ts):
        if jax.tree.leaves(ts)[0].shape[0] != 1:
            return batched(ts)
        return jax.tree.map(lambda x: x[None], fn(jax.tree.map(lambda x: x[0], ts)))

    return mapped

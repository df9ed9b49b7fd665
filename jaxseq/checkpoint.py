"""Orbax checkpoints of the whole (seed-stacked) train state, keyed by chunk index.

Layout: ``RUN_DIR/checkpoints/chunk_000010/`` (an orbax directory, finalised atomically by orbax)
and ``RUN_DIR/checkpoints/latest.json`` (``{"chunk": 10}``), replaced atomically after the save
completes, so an interrupted save never leaves a pointer to a partial checkpoint; the newest
``KEEP`` are kept. ``checkpoints/best/`` and ``best.json`` hold the best evaluated state (never
rotated). A save holds Ctrl-C back until it is complete. Restore falls back to the newest intact
checkpoint when one cannot be read.

In a multi-process run every process saves and restores its shards of the global arrays (orbax's
multi-host support); process 0 writes the JSON pointers and removes old folders.

The state is stored as its non-empty leaves, keyed by their position in the flattened tree: orbax
refuses zero-size arrays, and MJX physics states have some (e.g. ``act`` of robots without
actuator activations). Restoring rebuilds the tree from the abstract state, with zeros there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import SingleDeviceSharding

from jaxseq import distributed

KEEP = 2


class CheckpointWarning(UserWarning):
    """A checkpoint could not be read; an older one was used."""


def _dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _non_empty(leaves: list) -> dict:
    return {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves) if int(np.prod(leaf.shape)) > 0}


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C back while a checkpoint is written (main thread only): the interrupt arrives
    once the save is complete, so the interrupted run's own final save never races a write in
    flight."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def _write(path: Path, state: Any) -> None:
    """Every process calls this: orbax writes each process's shards, process 0 finalises."""
    if path.exists() and distributed.is_main_process():
        shutil.rmtree(path)
    distributed.barrier(f"jaxseq-clear-{path.name}")
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, _non_empty(jax.tree.leaves(state)))
    ckptr.wait_until_finished()


def _replace_json(path: Path, value: dict) -> None:
    if not distributed.is_main_process():
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def save(run_dir: Path, chunk: int, state: Any) -> Path:
    """Save ``state`` as the checkpoint after ``chunk`` chunks; keep the newest ``KEEP``."""
    root = _dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = (root / f"chunk_{chunk:06d}").absolute()
    with _sigint_deferred():
        _write(path, state)
        _replace_json(root / "latest.json", {"chunk": chunk})
        for old in sorted(root.glob("chunk_*"))[:-KEEP] if distributed.is_main_process() else []:
            shutil.rmtree(old, ignore_errors=True)
    return path


def save_best(run_dir: Path, chunk: int, state: Any, metric: str, score: float) -> Path:
    """Save ``state`` as the best checkpoint so far (``checkpoints/best``, never rotated), with
    ``best.json`` = {"chunk", "metric", "score"}."""
    root = _dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = (root / "best").absolute()
    with _sigint_deferred():
        _write(path, state)
        _replace_json(root / "best.json", {"chunk": chunk, "metric": metric, "score": score})
    return path


def best(run_dir: Path) -> dict | None:
    """``best.json`` of the run, or None."""
    try:
        return json.loads((_dir(run_dir) / "best.json").read_text())
    except (OSError, ValueError):
        return None


def _stored_chunks(run_dir: Path) -> list[int]:
    """The chunk numbers of the checkpoint folders on disk, newest first."""
    found = []
    for path in _dir(run_dir).glob("chunk_*"):
        try:
            found.append(int(path.name.split("_", 1)[1]))
        except ValueError:
            continue
    return sorted(found, reverse=True)


def latest_chunk(run_dir: Path) -> int | None:
    """The chunk of the newest checkpoint: ``latest.json``'s, or where that is unreadable the
    newest checkpoint folder's; None without checkpoints."""
    try:
        return int(json.loads((_dir(run_dir) / "latest.json").read_text())["chunk"])
    except (OSError, ValueError, KeyError, TypeError):
        stored = _stored_chunks(run_dir)
        return stored[0] if stored else None


def _placed(leaf: Any) -> jax.ShapeDtypeStruct:
    """``leaf`` with a sharding: its own (on a mesh), else this process's first device. Orbax
    restores onto the target's sharding; without one it would use the sharding the checkpoint was
    saved with, which fails when the device or process count changed since."""
    if getattr(leaf, "sharding", None) is not None:
        return leaf
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=SingleDeviceSharding(jax.local_devices()[0]))


def _read(path: Path, abstract: Any) -> Any:
    leaves, treedef = jax.tree.flatten(abstract)
    stored = ocp.StandardCheckpointer().restore(path.absolute(), _non_empty([_placed(a) for a in leaves]))
    restored = [stored.get(f"leaf_{i:05d}", None) for i in range(len(leaves))]
    restored = [jnp.zeros(a.shape, a.dtype) if r is None else r for a, r in zip(leaves, restored)]
    for a, r in zip(leaves, restored):
        if r.shape != a.shape or r.dtype != a.dtype:
            raise ValueError(f"a stored array is {r.dtype}{list(r.shape)}, the state expects {a.dtype}{list(a.shape)}")
    return jax.tree.unflatten(treedef, restored)


def restore(run_dir: Path, abstract: Any) -> tuple[int, Any]:
    """Restore the newest intact checkpoint into ``abstract`` (a tree of ``jax.ShapeDtypeStruct``,
    e.g. from ``trainer.abstract_state(key)``). A checkpoint that cannot be read (a missing
    or truncated file, arrays of the wrong shape) is skipped with a :class:`CheckpointWarning`,
    and the next older one is tried. Returns (chunk, state); FileNotFoundError if none is intact."""
    latest = latest_chunk(run_dir)
    candidates = ([latest] if latest is not None else []) + [c for c in _stored_chunks(run_dir) if c != latest]
    for chunk in candidates:
        path = _dir(run_dir) / f"chunk_{chunk:06d}"
        try:
            return chunk, _read(path, abstract)
        except Exception as err:  # orbax and tensorstore raise many kinds; any of them means unreadable
            warnings.warn(
                CheckpointWarning(
                    f"checkpoint {path} is unreadable ({type(err).__name__}: {str(err)[:200]}); trying an older one"
                ),
                stacklevel=2,
            )
    raise FileNotFoundError(f"no intact checkpoint in {_dir(run_dir)}")


def restore_best(run_dir: Path, abstract: Any) -> tuple[int, Any]:
    """Restore ``checkpoints/best`` (see :func:`save_best`). Returns (chunk, state);
    FileNotFoundError if the run has no readable best checkpoint."""
    info = best(run_dir)
    if info is None:
        raise FileNotFoundError(f"no best checkpoint in {_dir(run_dir)} (a run saves one at its evaluations)")
    return int(info["chunk"]), _read(_dir(run_dir) / "best", abstract)


def restore_chunk(run_dir: Path, chunk: int, abstract: Any) -> Any:
    """Restore the checkpoint after ``chunk`` chunks (only the newest ``KEEP`` are kept)."""
    path = _dir(run_dir) / f"chunk_{chunk:06d}"
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint of chunk {chunk} in {_dir(run_dir)}; stored: {_stored_chunks(run_dir)}")
    return _read(path, abstract)

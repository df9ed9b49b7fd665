"""Orbax checkpoints of the whole (seed-stacked) train state, keyed by chunk index.

Layout: ``RUN_DIR/checkpoints/chunk_000010/`` (an orbax directory, finalised atomically by orbax)
and ``RUN_DIR/checkpoints/latest.json`` (``{"chunk": 10}``), replaced atomically after the save
completes, so an interrupted save never leaves a pointer to a partial checkpoint; the newest
``KEEP`` are kept. The best evaluated state (never rotated) is the folder ``best.json`` names
(``{"chunk", "metric", "score", "folder": "best_000010"}``): a new best is written under a fresh
name, then ``best.json`` is replaced atomically, and only then is the old folder removed, so a kill
at any moment leaves ``best.json`` naming an intact folder. A save holds Ctrl-C back until it is
complete. Restore falls back to the newest intact checkpoint when one cannot be read; a write
that fails (a full disk) raises :class:`CheckpointWriteError`, leaving the older checkpoints as
they were.

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


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the checkpoints saved before it
    are intact, and the pointers still name them."""


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
    """Every process calls this: orbax writes each process's shards, process 0 finalises. Any
    failure (orbax and tensorstore raise many kinds for a full disk) is a
    :class:`CheckpointWriteError` naming the path; the partial folder is removed."""
    if path.exists() and distributed.is_main_process():
        shutil.rmtree(path)
    distributed.barrier(f"jaxseq-clear-{path.name}")
    try:
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(path, _non_empty(jax.tree.leaves(state)))
        ckptr.wait_until_finished()
    except Exception as err:
        if distributed.is_main_process():
            for partial in path.parent.glob(path.name + "*"):
                shutil.rmtree(partial, ignore_errors=True)
        raise CheckpointWriteError(f"cannot write the checkpoint {path}: {_reason(err)}") from err


def _reason(err: BaseException) -> str:
    """The innermost cause's message on one line (orbax wraps the OS error several times)."""
    for _ in range(20):  # a bound, in case a chain loops
        inner = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        if inner is None:
            break
        err = inner
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(text.split())[:300]


def _replace_json(path: Path, value: dict) -> None:
    if not distributed.is_main_process():
        return
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(value))
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(f"cannot write {path}: {err.strerror or err}") from err
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
    """Save ``state`` as the best checkpoint so far (never rotated): written under a fresh folder
    name, then ``best.json`` = {"chunk", "metric", "score", "folder"} is replaced atomically to
    name it, then the folder it named before is removed."""
    root = _dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    with _sigint_deferred():
        # Process 0 picks the name, so that every process writes its shards into the same folder.
        name = distributed.broadcast_text(_fresh_best_name(root, chunk) if distributed.is_main_process() else "")
        path = (root / name).absolute()
        _write(path, state)
        _replace_json(root / "best.json", {"chunk": chunk, "metric": metric, "score": score, "folder": path.name})
        if distributed.is_main_process():
            for old in _best_folders(root) - {path.name}:
                shutil.rmtree(root / old, ignore_errors=True)
    return path


def _best_folders(root: Path) -> set[str]:
    """Every best folder on disk: this layout's ``best_*`` and the older layout's ``best``."""
    return {p.name for p in root.glob("best_*") if p.is_dir()} | ({"best"} if (root / "best").is_dir() else set())


def _fresh_best_name(root: Path, chunk: int) -> str:
    """``best_000010``, or with a suffix when that name is taken (a resumed run's chunk again)."""
    name, n = f"best_{chunk:06d}", 1
    while (root / name).exists():
        n += 1
        name = f"best_{chunk:06d}_{n}"
    return name


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
    """Restore the best checkpoint (see :func:`save_best`). Returns (chunk, state). When it cannot
    be read, a :class:`CheckpointWarning` says so and the newest intact checkpoint is restored
    instead (:func:`restore`). FileNotFoundError if the run has no best checkpoint."""
    info = best(run_dir)
    if info is None:
        raise FileNotFoundError(f"no best checkpoint in {_dir(run_dir)} (a run saves one at its evaluations)")
    path = _dir(run_dir) / info.get("folder", "best")  # runs written before best.json named its folder
    try:
        return int(info["chunk"]), _read(path, abstract)
    except Exception as err:  # as in restore: any failure to read means unreadable
        warnings.warn(
            CheckpointWarning(
                f"the best checkpoint {path} is unreadable ({type(err).__name__}: {str(err)[:200]}); "
                "using the newest intact checkpoint instead"
            ),
            stacklevel=2,
        )
    return restore(run_dir, abstract)


def restore_chunk(run_dir: Path, chunk: int, abstract: Any) -> Any:
    """Restore the checkpoint after ``chunk`` chunks (only the newest ``KEEP`` are kept)."""
    path = _dir(run_dir) / f"chunk_{chunk:06d}"
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint of chunk {chunk} in {_dir(run_dir)}; stored: {_stored_chunks(run_dir)}")
    return _read(path, abstract)

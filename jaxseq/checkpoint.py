"""Orbax checkpoints of the whole (seed-stacked) train state, keyed by chunk index.

Layout: ``RUN_DIR/checkpoints/chunk_000010/`` (an orbax directory, finalised atomically by orbax)
and ``RUN_DIR/checkpoints/latest.json`` (``{"chunk": 10}``), replaced atomically after the save
completes, so an interrupted save never leaves a pointer to a partial checkpoint.

The state is stored as its non-empty leaves, keyed by their position in the flattened tree: orbax
refuses zero-size arrays, and MJX physics states have some (e.g. ``act`` of robots without
actuator activations). Restoring rebuilds the tree from the abstract state, with zeros there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

KEEP = 2


def _dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _non_empty(leaves: list) -> dict:
    return {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves) if int(np.prod(leaf.shape)) > 0}


def save(run_dir: Path, chunk: int, state: Any) -> Path:
    """Save ``state`` as the checkpoint after ``chunk`` chunks; keep the newest ``KEEP``."""
    root = _dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = (root / f"chunk_{chunk:06d}").absolute()
    if path.exists():
        shutil.rmtree(path)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, _non_empty(jax.tree.leaves(state)))
    ckptr.wait_until_finished()
    tmp = root / "latest.json.tmp"
    tmp.write_text(json.dumps({"chunk": chunk}))
    os.replace(tmp, root / "latest.json")
    for old in sorted(root.glob("chunk_*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def latest_chunk(run_dir: Path) -> int | None:
    pointer = _dir(run_dir) / "latest.json"
    if not pointer.exists():
        return None
    return int(json.loads(pointer.read_text())["chunk"])


def restore(run_dir: Path, abstract: Any) -> tuple[int, Any]:
    """Restore the latest checkpoint into ``abstract`` (a tree of ``jax.ShapeDtypeStruct``, e.g. from
    ``jax.eval_shape(trainer.init, key)``). Returns (chunk, state)."""
    chunk = latest_chunk(run_dir)
    if chunk is None:
        raise FileNotFoundError(f"no checkpoint in {_dir(run_dir)}")
    leaves, treedef = jax.tree.flatten(abstract)
    stored = ocp.StandardCheckpointer().restore((_dir(run_dir) / f"chunk_{chunk:06d}").absolute(), _non_empty(leaves))
    restored = [stored.get(f"leaf_{i:05d}", None) for i in range(len(leaves))]
    restored = [jnp.zeros(a.shape, a.dtype) if r is None else r for a, r in zip(leaves, restored)]
    return chunk, jax.tree.unflatten(treedef, restored)

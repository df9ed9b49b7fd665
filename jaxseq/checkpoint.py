"""Orbax checkpoints of the whole (seed-stacked) train state, keyed by chunk index.

Layout: ``RUN_DIR/checkpoints/chunk_000010/`` (an orbax directory, finalised atomically by orbax)
and ``RUN_DIR/checkpoints/latest.json`` (``{"chunk": 10}``), replaced atomically after the save
completes, so an interrupted save never leaves a pointer to a partial checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

KEEP = 2


def _dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save(run_dir: Path, chunk: int, state: Any) -> Path:
    """Save ``state`` as the checkpoint after ``chunk`` chunks; keep the newest ``KEEP``."""
    root = _dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = (root / f"chunk_{chunk:06d}").absolute()
    if path.exists():
        shutil.rmtree(path)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, state)
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
    state = ocp.StandardCheckpointer().restore((_dir(run_dir) / f"chunk_{chunk:06d}").absolute(), abstract)
    return chunk, state

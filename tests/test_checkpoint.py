"""Checkpoints round-trip trees with zero-size leaves (MJX physics states have them); a kill or a
full disk during a save never costs the checkpoints saved before it."""

import errno
import os
import signal
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxseq import checkpoint


def test_save_and_restore_keep_every_leaf_including_zero_size_ones(tmp_path):
    state = {"a": jnp.arange(3.0), "act": jnp.zeros((2, 0)), "b": {"c": jnp.ones((2, 2), jnp.int32)}}
    checkpoint.save(tmp_path, 3, state)
    checkpoint.save(tmp_path, 5, jax.tree.map(lambda x: x + 1, state))
    chunk, out = checkpoint.restore(tmp_path, jax.eval_shape(lambda: state))
    assert chunk == 5
    for want, got in zip(jax.tree.leaves(state), jax.tree.leaves(out)):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, np.asarray(want) + 1)
    assert jax.tree.structure(out) == jax.tree.structure(state)


# A subprocess saves a best checkpoint of value 1, then a second one of value 2 that is killed with
# SIGKILL at the moment named by its argument: "writing" (orbax has been asked to write), or
# "written" (the folder is complete, the pointer not yet replaced).
_KILLED_BEST_SAVE = """
import os, signal, sys
import numpy as np
import orbax.checkpoint as ocp
from jaxseq import checkpoint

run_dir, moment = sys.argv[1], sys.argv[2]
checkpoint.save_best(run_dir, 1, {"w": np.full(3, 1.0, np.float32)}, "test_return_mean", 1.0)
method = "save" if moment == "writing" else "wait_until_finished"
original = getattr(ocp.StandardCheckpointer, method)

def killed(self, *args, **kwargs):
    if moment == "written":
        original(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

setattr(ocp.StandardCheckpointer, method, killed)
checkpoint.save_best(run_dir, 2, {"w": np.full(3, 2.0, np.float32)}, "test_return_mean", 2.0)
"""


@pytest.mark.parametrize("moment", ["writing", "written"])
def test_a_kill_inside_a_best_save_leaves_the_previous_best_intact(tmp_path, moment):
    """kill -9 while a new best is saved: best.json still names the previous best, whose folder is
    intact and holds its state; the next best save replaces it and leaves one best folder."""
    proc = subprocess.run([sys.executable, "-c", _KILLED_BEST_SAVE, str(tmp_path), moment], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    abstract = jax.eval_shape(lambda: {"w": jnp.zeros(3)})
    assert checkpoint.best(tmp_path)["chunk"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", checkpoint.CheckpointWarning)  # no fallback: the best itself is read
        chunk, state = checkpoint.restore_best(tmp_path, abstract)
    assert chunk == 1 and state["w"].tolist() == [1.0, 1.0, 1.0]
    checkpoint.save_best(tmp_path, 3, {"w": jnp.full(3, 3.0)}, "test_return_mean", 3.0)
    assert checkpoint.restore_best(tmp_path, abstract)[1]["w"].tolist() == [3.0, 3.0, 3.0]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.json", "best_000003"]


def test_a_damaged_best_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    checkpoint.save(tmp_path, 4, {"w": jnp.full(3, 4.0)})
    path = checkpoint.save_best(tmp_path, 2, {"w": jnp.full(3, 2.0)}, "test_return_mean", 2.0)
    for f in path.rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[:3])
    with pytest.warns(checkpoint.CheckpointWarning, match="best checkpoint .* is unreadable"):
        chunk, state = checkpoint.restore_best(tmp_path, jax.eval_shape(lambda: {"w": jnp.zeros(3)}))
    assert chunk == 4 and state["w"].tolist() == [4.0, 4.0, 4.0]


def test_a_failed_write_is_one_error_and_keeps_the_older_checkpoints(tmp_path, monkeypatch):
    """A full disk, as orbax reports it (an OSError deep in its save): CheckpointWriteError naming the
    path and the OS's reason, no partial folder, and the pointers still name intact checkpoints."""
    checkpoint.save(tmp_path, 1, {"w": jnp.full(3, 1.0)})
    checkpoint.save_best(tmp_path, 1, {"w": jnp.full(3, 1.0)}, "test_return_mean", 1.0)

    def full(self, *args, **kwargs):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as err:
            raise ValueError("tensorstore: write failed") from err

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", full)
    for save in (
        lambda: checkpoint.save(tmp_path, 2, {"w": jnp.full(3, 2.0)}),
        lambda: checkpoint.save_best(tmp_path, 2, {"w": jnp.full(3, 2.0)}, "test_return_mean", 2.0),
    ):
        with pytest.raises(checkpoint.CheckpointWriteError, match="No space left on device"):
            save()
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "best.json",
        "best_000001",
        "chunk_000001",
        "latest.json",
    ]
    abstract = jax.eval_shape(lambda: {"w": jnp.zeros(3)})
    assert checkpoint.restore(tmp_path, abstract)[0] == 1 and checkpoint.restore_best(tmp_path, abstract)[0] == 1

"""Sharded runs against one-device runs, for tests/test_scale.py. Run as a script with
XLA_FLAGS=--xla_force_host_platform_device_count=4 (the device count is fixed when JAX starts) and
an output folder; prints one JSON object of measured differences for the test to assert on.

Every run is the CLI's ``train`` with :data:`ARGS`: a 2-point sweep x 2 seeds = 4 members, so the
same run can be split over 4 devices, 2 processes or 2 devices' env batches, and compared."""

import json
import shutil
import sys
from pathlib import Path

import jax
import numpy as np

from jaxseq import checkpoint
from jaxseq.cli import build_parser, config_from_args
from jaxseq.run import train_run
from jaxseq.run_folder import read_jsonl
from jaxseq.train import make_train

ARGS = ["--env", "mpe:spread?n=2", "--algo", "mappo", "--num-seeds", "2", "--sweep", "actor_lr=5e-4,3e-3"]
ARGS += ["--total-steps", "128", "--no-progress", "--set", "num_envs=4", "rollout_length=8", "sequence_length=4"]
ARGS += ["epochs=1", "num_minibatches=1", "hidden_size=16", "num_layers=1", "updates_per_chunk=2", "eval_every=1"]
ARGS += ["eval_envs=2", "eval_episodes=2", "absolute_factor=0"]
#: Per-member metrics compared between runs (None, a chunk without an ended episode, as NaN).
KEYS = ("return_per_seed", "test_return_per_seed")


def config(**overrides):
    return config_from_args(build_parser().parse_args(["train", *ARGS])).replace(**overrides)


def outcome(run: Path) -> list[np.ndarray]:
    """A run folder's per-member metrics of every chunk and its newest checkpoint's parameters."""
    rows = read_jsonl(run / "metrics.jsonl")
    arrays = [np.asarray([r[k] for r in rows], np.float64) for k in KEYS]
    _, state = checkpoint.restore(run, make_train(config(devices=1)).abstract_state(jax.random.PRNGKey(0)))
    return arrays + [np.asarray(x, np.float64) for x in jax.tree.leaves((state.actor_params, state.critic_params))]


def diff(run_a: Path, run_b: Path) -> dict:
    """The largest absolute and relative differences of two run folders' outcomes, and whether they
    are bit-identical (NaN where both are NaN)."""
    pairs = list(zip(outcome(run_a), outcome(run_b)))
    assert all(a.shape == b.shape for a, b in pairs)

    def worst(f):
        return max(float(np.nanmax(f(a, b), initial=0.0)) for a, b in pairs)

    return {
        "max_abs": worst(lambda a, b: np.abs(a - b)),
        "max_rel": worst(lambda a, b: np.abs(a - b) / (np.abs(b) + 1e-6)),
        "identical": all(np.array_equal(a, b, equal_nan=True) for a, b in pairs),
        "same_missing": all(np.array_equal(np.isnan(a), np.isnan(b)) for a, b in pairs),
    }


def main(out: Path):
    run = {name: train_run(config(**fields), out=out / name, progress=False) for name, fields in RUNS.items()}
    result = {"devices": jax.device_count(), "runs": {k: str(v) for k, v in run.items()}}
    result["members"] = diff(run["four"], run["one"])
    result["envs"] = diff(run["envs"], run["one"])
    # Resumed on one device after two chunks on four, extended by a chunk; against the one-device
    # run extended the same way.
    for name in ("four", "one"):
        resumed = shutil.copytree(run[name], out / "resumed" / name)
        train_run(resume=resumed, overrides={"total_steps": 192, "devices": 1}, progress=False)
    result["resumed_chunks"] = [r["chunk"] for r in read_jsonl(out / "resumed" / "four" / "metrics.jsonl")]
    result["resumed"] = diff(out / "resumed" / "four", out / "resumed" / "one")
    json.dump(result, sys.stdout)


#: The runs compared: members over 4 devices, the same on 1, each member's envs over 2 devices.
RUNS = {"four": dict(devices=4), "one": dict(devices=1), "envs": dict(shard="envs", devices=2)}

if __name__ == "__main__":
    import jaxmarl.environments  # noqa: F401  (as the other tests: it resets stdout on first import)

    main(Path(sys.argv[1]))

"""No finished work lost: a diverging run stops on its last finite state, resume says what it does,
damaged checkpoints fall back, Ctrl-C never races a save, bad values and paths fail early."""

import errno
import json
import math
import os
import re
import signal
import subprocess
import sys
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxseq import checkpoint
from jaxseq.cli import main
from jaxseq.config import Config
from jaxseq.envs import parse_env_id
from jaxseq.errors import ConfigError, RunDiverged
from jaxseq.metrics import non_finite
from jaxseq.run import _run_chunk, train_run
from jaxseq.train import make_train

from support.helpers import cli_args, tiny

# The configuration of test_trainer's resume test (4 chunks, 2 seeds): its programs are compiled once.
FOUR_CHUNKS = dict(total_steps=4 * 8 * 2 * 4)


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_diverging_run_stops_and_keeps_its_last_finite_state(tmp_path, capfd):
    """Adam's first step moves every weight by about the learning rate: with one gradient step per
    chunk, 1e30 leaves finite weights after chunk 1 and overflows in chunk 2 (the CLI's own path)."""
    argv = ["train", "--out", str(tmp_path), *"--env mpe:spread --algo mappo --total-steps 1024 --num-seeds 2".split()]
    sets = "num_envs=4 rollout_length=8 sequence_length=4 hidden_size=16 num_layers=1 updates_per_chunk=1 epochs=1 "
    sets += "num_minibatches=1 eval_every=0 checkpoint_every=1 actor_lr=1e30 critic_lr=1e30"
    argv += ["--no-progress"] + [arg for item in sets.split() for arg in ("--set", item)]
    assert main(argv) == 3
    err = capfd.readouterr().err
    assert "jaxseq: error: chunk 2 diverged (non-finite member 0 (seed 0):" in err and "member 1 (seed 1):" in err, err
    assert "the checkpoints hold chunk 1, the last finite state" in err
    (run_dir,) = tmp_path.iterdir()
    rows = _rows(run_dir)
    assert [r["chunk"] for r in rows] == [1]
    assert all(rows[0][k] is not None for k in ("loss_actor", "loss_critic"))  # no null losses written
    config = json.loads((run_dir / "config.json").read_text())
    trainer = make_train(Config(**config))
    key = jax.random.PRNGKey(config["seed"])
    chunk, restored = checkpoint.restore(run_dir, jax.eval_shape(trainer.init, key))
    assert chunk == 1
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored) if np.issubdtype(x.dtype, np.floating))
    again, _ = trainer.chunk(trainer.init(key))  # the last finite state, recomputed
    for a, b in zip(jax.tree.leaves(jax.device_get(again)), jax.tree.leaves(jax.device_get(restored))):
        np.testing.assert_array_equal(a, b)


def test_the_guard_checks_every_float_leaf_of_the_state_not_only_the_parameters():
    """An infinite second moment in Adam's state leaves the losses and parameters finite (the step
    is mu / sqrt(inf) = 0) and stays infinite: the guard names it, for the member that holds it."""
    trainer = make_train(tiny(**FOUR_CHUNKS))
    ts = trainer.init(jax.random.PRNGKey(0))

    def infinite_nu(path, leaf):
        return leaf.at[1].set(np.inf) if "nu" in jax.tree_util.keystr(path) else leaf

    ts = ts.replace(critic_opt=jax.tree_util.tree_map_with_path(infinite_nu, ts.critic_opt))
    new, m = trainer.chunk(ts)
    m = jax.device_get(m)
    assert all(np.isfinite(m[k]).all() for k in ("loss_actor", "loss_critic", "entropy", "approx_kl"))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(new.critic_params)))
    assert non_finite(m) == {1: ["state.critic_opt"]}
    with pytest.raises(RunDiverged, match=r"chunk 3 diverged \(non-finite member 1 \(seed 1\): state.critic_opt\)"):
        _run_chunk(trainer, trainer.chunk, ts, 3, 2)


def test_resume_extends_a_run_and_refuses_other_changes(tmp_path, capsys):
    cfg = tiny(**FOUR_CHUNKS)
    run_dir = train_run(cfg.replace(total_steps=cfg.total_steps // 2), out=tmp_path, progress=False)
    assert len(_rows(run_dir)) == 2
    assert main(["train", "--resume", str(run_dir), "--set", "actor_lr=0.1", "--no-progress"]) == 2
    assert "actor_lr cannot change when a run is resumed" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--algo", "happo", "--no-progress"]) == 2
    assert "algo cannot change" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--total-steps", str(cfg.total_steps), "--no-progress"]) == 0
    assert [r["chunk"] for r in _rows(run_dir)] == [1, 2, 3, 4]
    assert json.loads((run_dir / "config.json").read_text())["total_steps"] == cfg.total_steps
    best = checkpoint.best(run_dir)  # evaluated every 2 chunks: the best of chunks 2 and 4
    scores = {r["chunk"]: r["test_return_mean"] for r in _rows(run_dir) if r["test_return_mean"] is not None}
    assert best["metric"] == "test_return_mean" and best["chunk"] == max(scores, key=scores.get)
    assert math.isclose(best["score"], max(scores.values()), rel_tol=1e-6)


def test_resume_of_a_folder_without_checkpoints_is_an_error_unless_starting_over(tmp_path):
    cfg = tiny(**FOUR_CHUNKS)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(cfg.to_json())
    with pytest.raises(ConfigError, match="has no checkpoint; pass --start-over"):
        train_run(resume=run_dir, progress=False)
    train_run(resume=run_dir, progress=False, start_over=True, max_chunks=1)
    assert [r["chunk"] for r in _rows(run_dir)] == [1]


def _small_state(value):
    return {"w": np.full((3, 4), value, np.float32), "step": np.array(value, np.int32)}


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    checkpoint.save(tmp_path, 1, _small_state(1))
    checkpoint.save(tmp_path, 2, _small_state(2))
    abstract = jax.eval_shape(lambda: _small_state(0))
    for path in (tmp_path / "checkpoints" / "chunk_000002").rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[:3])  # every file of the newest checkpoint truncated
    with pytest.warns(checkpoint.CheckpointWarning, match="chunk_000002 is unreadable"):
        chunk, state = checkpoint.restore(tmp_path, abstract)
    assert chunk == 1 and float(state["w"][0, 0]) == 1.0
    (tmp_path / "checkpoints" / "latest.json").write_text("")  # an empty pointer: the folders are read
    assert checkpoint.latest_chunk(tmp_path) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", checkpoint.CheckpointWarning)
        assert checkpoint.restore(tmp_path, abstract)[0] == 1
    for path in (tmp_path / "checkpoints").glob("chunk_*"):
        for f in path.rglob("*"):
            if f.is_file():
                f.unlink()
    with pytest.warns(checkpoint.CheckpointWarning), pytest.raises(FileNotFoundError, match="no intact checkpoint"):
        checkpoint.restore(tmp_path, abstract)


def test_ctrl_c_during_a_save_waits_for_it(tmp_path, monkeypatch):
    """SIGINT arrives while the checkpoint is being written: the save completes, then the
    interrupt is raised, and the checkpoint is intact."""
    write = checkpoint._write

    def interrupted_write(path, state):
        os.kill(os.getpid(), signal.SIGINT)
        write(path, state)

    monkeypatch.setattr(checkpoint, "_write", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, 3, _small_state(3))
    assert checkpoint.latest_chunk(tmp_path) == 3
    assert checkpoint.restore(tmp_path, jax.eval_shape(lambda: _small_state(0)))[0] == 3


@pytest.mark.parametrize(
    "overrides, field, words",
    [
        (dict(actor_lr=math.nan), "actor_lr", "finite"),
        (dict(max_grad_norm=math.nan), "max_grad_norm", "finite"),
        (dict(huber_delta=math.inf), "huber_delta", "finite"),
        (dict(log_std_init=-math.inf), "log_std_init", "finite"),
        (dict(adam_eps=0.0), "adam_eps", "> 0"),
        (dict(seed=2**32), "seed", "\\[0, 2\\*\\*32\\)"),
        (dict(seed=-1), "seed", "\\[0, 2\\*\\*32\\)"),
    ],
)
def test_non_finite_values_and_out_of_range_seeds_are_refused(overrides, field, words):
    with pytest.raises(ConfigError, match=words) as err:
        make_train(Config(**overrides))
    assert err.value.field == field


def test_a_repeated_env_parameter_is_refused():
    with pytest.raises(ConfigError, match="parameter n is given twice"):
        parse_env_id("mpe:spread?n=3&n=4")


def test_path_and_late_config_errors_leave_no_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["train", "--out", str(blocker), "--no-progress"]) == 2
    assert f"jaxseq: error: out: {blocker} is a file, not a folder" in capsys.readouterr().err
    out = tmp_path / "runs"
    assert main(["train", "--out", str(out), "--env", "mpe:reference?actions=continuous"]) == 2
    assert main(["train", "--out", str(out), "--set", "agent_blocks=5"]) == 2
    assert not out.exists() or not any(out.iterdir())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert main(["train", "--resume", str(broken)]) == 2
    assert "is not a readable jaxseq config" in capsys.readouterr().err
    (broken / "config.json").write_text(json.dumps({"no_such_field": 1}))
    assert main(["train", "--resume", str(broken)]) == 2
    assert "is not a readable jaxseq config" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, words",
    [
        ("--coordinator localhost:1234", "distributed: .* go together \\(missing --num-processes, --process-id\\)"),
        ("--num-processes 2", "distributed: .* go together \\(missing --coordinator, --process-id\\)"),
        ("--process-id 1", "distributed: .* go together \\(missing --coordinator, --num-processes\\)"),
        ("--coordinator localhost:1234 --num-processes 2", "distributed: .* go together \\(missing --process-id\\)"),
        ("--coordinator localhost:1234 --num-processes 2 --process-id 5", "process_id: must lie in \\[0, 2\\), got 5"),
        ("--coordinator nonsense --num-processes 1 --process-id 0", "coordinator: expected HOST:PORT"),
        ("--coordinator localhost:1234 --num-processes 0 --process-id 0", "num_processes: must be at least 1"),
        ("--distributed --process-id -1", "process_id: must lie in \\[0, the number of processes\\)"),
    ],
)
def test_bad_multi_process_flags_are_one_line_before_jax_starts(flags, words, capsys, monkeypatch):
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: pytest.fail("jax.distributed was started"))
    assert main(["train", *flags.split(), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(f"jaxseq: error: {words}.*\n", err), err


def test_a_process_without_its_coordinator_says_what_it_waits_for_times_out_and_honours_ctrl_c(tmp_path):
    """Process 1 of 2 with no process 0: one line says what it waits for; --init-timeout ends the wait
    with a one-line error, and Ctrl-C ends it at once. Without a cluster, --distributed says what is missing."""
    base = [sys.executable, "-m", "jaxseq", "train", "--no-progress", "--out", str(tmp_path)]
    wait = ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "1"]
    # Ctrl-C's default action in the children: a child inherits an ignored SIGINT, and in the full
    # suite the xdist worker's SIGINT was found ignored (SigIgn in /proc), so the child never saw it.
    kw = dict(
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    procs = {
        "timeout": subprocess.Popen([*base, *wait, "--init-timeout", "2"], **kw),
        "ctrl-c": subprocess.Popen([*base, *wait], **kw),
        "no cluster": subprocess.Popen([*base, "--distributed"], **kw),
    }
    first = procs["ctrl-c"].stderr.readline()
    assert first == "jaxseq: joining as process 1 of 2: waiting up to 300 s for the coordinator at 127.0.0.1:1\n"
    procs["ctrl-c"].send_signal(signal.SIGINT)
    out = {name: (p.wait(timeout=60), p.communicate()[1]) for name, p in procs.items()}
    assert out["ctrl-c"] == (130, "jaxseq: interrupted before any chunk ran; nothing was written\n")
    code, err = out["timeout"]
    assert code == 2 and err.splitlines()[-1].startswith(
        "jaxseq: error: distributed: no answer from the coordinator at 127.0.0.1:1 within 2 s"
    ), err
    code, err = out["no cluster"]
    assert code == 2 and "no cluster (SLURM, Open MPI, TPU) supplied the rest" in err.splitlines()[-1], err
    assert all(len(out[name][1].splitlines()) == 2 for name in ("timeout", "no cluster"))  # the wait, the error


def test_ignored_train_flags_are_refused_and_paths_checked_before_compiling(tmp_path, capsys, monkeypatch):
    import jaxseq.run as run_mod

    monkeypatch.setattr(run_mod, "_compile", lambda trainer: pytest.fail("compiled before the check"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for argv, words in [
        (["--out", str(blocker / "runs")], f"out: cannot create {blocker / 'runs'}: {blocker} is a file"),
        (["--sweep", "actor_lr=1e-3,3e-3", "--set", "actor_lr=1e-4"], "actor_lr: is both swept (--sweep) and set"),
        (["--sweep", "clip_eps=0.1,0.2", "--algo", "a2po", "--sweep", "nosuch=1"], "nosuch: no such config field"),
        (["--resume", str(tmp_path), "--out", str(tmp_path)], "out: cannot be given with --resume"),
    ]:
        assert main(["train", *argv, "--no-progress"]) == 2
        assert capsys.readouterr().err.startswith(f"jaxseq: error: {words}")
    for argv in (["train", "--num-seeds", "x"], ["eval"], ["report", str(tmp_path)]):  # argparse's own errors
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith("jaxseq: error: ") and err.count("\n") == 1, err


def test_a_full_disk_and_interrupts_are_one_line_and_keep_what_was_written(tmp_path, capfd, monkeypatch):
    """The checkpoint after chunk 2 meets a full disk (orbax's writer patched): exit 4, one line,
    chunk 1's checkpoint and both metrics lines kept. Ctrl-C says what the folder holds."""
    import jaxseq.run as run_mod

    argv = ["train", "--out", str(tmp_path / "runs"), *cli_args(tiny(**FOUR_CHUNKS))]
    save, calls = ocp.StandardCheckpointer.save, []

    def full_after_one(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise ValueError("tensorstore write failed") from OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(self, *args, **kwargs)

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", full_after_one)
    assert main(argv) == 4
    (run_dir,) = (tmp_path / "runs").iterdir()
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxseq: error: cannot write the checkpoint "), err
    assert "No space left on device; what was written before is kept" in err
    monkeypatch.setattr(ocp.StandardCheckpointer, "save", save)
    assert checkpoint.latest_chunk(run_dir) == 1 and [r["chunk"] for r in _rows(run_dir)] == [1, 2]

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "_compile", lambda trainer: None)  # nothing runs: no program needed
    monkeypatch.setattr(run_mod, "_run_chunk", interrupted)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 130
    assert capfd.readouterr().err == (
        f"jaxseq: interrupted; {run_dir} is checkpointed after chunk 1 (continue with --resume {run_dir})\n"
    )
    assert main(argv) == 130
    new_dir = next(d for d in (tmp_path / "runs").iterdir() if d != run_dir)
    assert (
        f"jaxseq: interrupted before the first chunk finished; {new_dir} holds no checkpoint" in capfd.readouterr().err
    )

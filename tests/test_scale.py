"""Beyond one device, on CPU. The device count is fixed when JAX starts, so each case runs in
subprocesses with forced host devices (``--xla_force_host_platform_device_count``): members and
env batches sharded over a mesh against one device (tests/support/scale_checks.py), and two processes on
localhost joined by ``jax.distributed`` (CPU collectives over gloo) writing one run folder."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).parent
# Sharded and one-device programs are different XLA programs (per-device batch widths, partitioned
# reductions), so they agree to float32 rounding, not bit for bit; this bounds it.
RTOL, ATOL = 1e-4, 1e-6
# Fresh processes with forced devices compile everything anew (about 110 s of the suite's time on
# 2 cores): CI runs these in its slow step.
pytestmark = pytest.mark.slow


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale")
    done = subprocess.run(
        [sys.executable, str(TESTS / "support" / "scale_checks.py"), str(out)],
        env=_env(4),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _agree(d: dict) -> bool:
    return d["same_missing"] and (d["max_rel"] < RTOL or d["max_abs"] < ATOL)


def test_members_sharded_over_four_devices_match_one_device(checks):
    """Per-member returns, greedy test returns and final parameters of a 2-point sweep x 2 seeds."""
    assert checks["devices"] == 4
    assert _agree(checks["members"]), checks["members"]


def test_data_parallel_over_two_devices_matches_one_device(checks):
    """Each member's 4 envs split over 2 devices, the batch statistics and gradients reduced over them."""
    assert _agree(checks["envs"]), checks["envs"]


def test_resume_on_one_device_continues_a_run_sharded_over_four(checks):
    assert checks["resumed_chunks"] == [1, 2, 3]
    assert _agree(checks["resumed"]), checks["resumed"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_write_one_run_folder_equal_to_one_process(checks, tmp_path):
    """Two processes with two devices each run the 4-member sweep (two members each) and process 0
    writes the run folder: equal to the one-process run over four devices. Then one process on
    one device resumes it (orbax restores the shards both processes wrote)."""
    from support.scale_checks import ARGS, diff

    port = _free_port()
    two = [
        subprocess.Popen(
            [sys.executable, "-m", "jaxseq", "train", *ARGS, "--out", str(tmp_path), "--coordinator"]
            + [f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in two]
    assert [p.returncode for p in two] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    (run,) = list(tmp_path.iterdir())  # one folder, written by process 0
    assert "(1 member per device" in outputs[0] and "final_return_mean" in outputs[0]  # process 0's summary
    assert "run folder:" not in outputs[1]
    one = Path(checks["runs"]["four"])
    assert _agree(diff(run, one)), diff(run, one)
    for point in ("000", "001"):
        assert (run / "points" / point / "metrics.jsonl").read_text().count("\n") == 2
    table_two, table_one = (json.loads((r / "sweep.json").read_text()) for r in (run, one))
    assert [e["point"] for e in table_two] == [e["point"] for e in table_one]

    resumed = subprocess.run(
        [sys.executable, "-m", "jaxseq", "train", "--resume", str(run), "--total-steps", "192", "--devices", "1"],
        env=_env(1),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"run folder: {run}" in resumed.stdout and "final_return_mean" in resumed.stdout
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["chunk"] for r in rows] == [1, 2, 3] and np.isfinite(rows[-1]["loss_actor"])

"""The benchmark scripts run end to end (tiny sizes, nothing saved) and print their tables."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, *args):
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--no-save"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.slow  # a benchmark: the trainer's chunk and rollout it times are tested elsewhere
def test_throughput_script():
    out = _run(
        "throughput.py",
        "--envs",
        "mpe:spread",
        "--seeds",
        "1",
        "--num-envs",
        "2",
        "--rollout-length",
        "8",
        "--updates",
        "1",
        "--repeats",
        "1",
    )
    assert "| mpe:spread | 1 |" in out and "command: `python benchmarks/throughput.py" in out


# The two update-time scripts compile four programs each (30-35 s on 2 cores): -m slow, for the suite's budget.
@pytest.mark.slow
def test_sequential_scaling_script():
    out = _run(
        "sequential_scaling.py",
        "--compile-agents",
        "2",
        "--time-agents",
        "3",
        "--num-envs",
        "2",
        "--rollout-length",
        "8",
        "--repeats",
        "1",
        "--variants",
        "MAPPO",
        "A2PO 3 blocks",
    )
    assert "| 2 |" in out and "| 3 |" in out and "A2PO 3 blocks / MAPPO" in out


@pytest.mark.slow
def test_sdc_cost_script():
    out = _run(
        "sdc_cost.py",
        "--agents",
        "2",
        "--num-envs",
        "2",
        "--rollout-length",
        "8",
        "--omega-n",
        "2",
        "--repeats",
        "1",
        "--variants",
        "no SDC",
        "OPSPO omega-net",
    )
    assert "OPSPO omega-net / no SDC" in out and "| 2 |" in out and "MiB" in out


def test_bridge_throughput_script():
    out = _run("bridge_throughput.py", "--workers", "1", "--num-envs", "2", "--steps", "30")
    assert "| 1 | 2 |" in out and "command: `python benchmarks/bridge_throughput.py" in out


@pytest.mark.slow
def test_sweep_scaling_script():
    out = _run("sweep_scaling.py", "--members", "1", "2", "--devices", "1", "2", "--num-envs", "2")
    assert "| 1 | " in out and "| n/a |" in out and "command: `python benchmarks/sweep_scaling.py" in out


# Nine programs compiled (40 s on 2 cores at load 4.5, beside another test run): -m slow, as the
# other update-time scripts.
@pytest.mark.slow
def test_profile_iteration_script():
    out = _run(
        "profile_iteration.py",
        "--env",
        "mpe:spread",
        "--algos",
        "mappo",
        "--num-envs",
        "4",
        "--rollout-length",
        "4",
        "--hidden-size",
        "4",
        "--repeats",
        "1",
    )
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    for phase in ("rollout", "critic forward", "estimators", "actor update", "critic fit", "learn", "iteration"):
        ms = float(rows[phase].split(" | ")[1].replace(",", ""))
        assert ms > 0, rows[phase]


def test_peer_throughput_needs_jaxmarl_src():
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "peer_throughput.py"), "--no-save"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "--jaxmarl-src DIR is required" in res.stderr


JAXMARL_SRC = os.environ.get("JAXMARL_SRC")


@pytest.mark.slow
@pytest.mark.skipif(not JAXMARL_SRC, reason="set JAXMARL_SRC to a checkout of FLAIROx/JaxMARL")
def test_peer_throughput_script():
    out = _run("peer_throughput.py", "--jaxmarl-src", JAXMARL_SRC, "--envs", "mpe", "--updates", "1", "--repeats", "1")
    assert "| baselines/MAPPO/mappo_rnn_mpe.py |" in out and "jaxseq / JaxMARL" in out

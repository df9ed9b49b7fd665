"""Shared by the benchmark scripts: the header that names device, command and date, appending a
result to ``benchmarks/results/``, and timing compiled programs."""

from __future__ import annotations

import datetime
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import jax

RESULTS_DIR = Path(__file__).parent / "results"


def header(script: str, argv: list[str] | None, setup: str) -> str:
    device = jax.devices()[0]
    kind = f"{os.cpu_count()} cores" if device.platform == "cpu" else device.device_kind
    args = " ".join(sys.argv[1:] if argv is None else argv)
    return (
        f"## {datetime.date.today().isoformat()} on {device.platform}: {kind}, jax {jax.__version__}\n\n"
        f"command: `python benchmarks/{script} {args}`; {setup}\n\n"
    )


def publish(text: str, name: str, save: bool) -> None:
    """Print ``text`` and, if ``save``, append it to ``benchmarks/results/<name>``."""
    print(text)
    if save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        with (RESULTS_DIR / name).open("a") as f:
            f.write(text)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (``uptime``'s numbers), for the record of a measurement."""
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``fn``, its result ready (``jax.block_until_ready``)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones
    (which compile a jitted ``fn``)."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    return statistics.median(seconds(fn) for _ in range(repeats))

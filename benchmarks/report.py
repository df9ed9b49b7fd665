"""Shared by the benchmark scripts: the header that names device, command and date, and appending a
result to ``benchmarks/results/``."""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

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

"""Reading a run folder without the training loop: its config and its metrics streams (the
checkpoints are :mod:`jaxseq.checkpoint`). What ``run`` writes, ``evaluation``, ``render``,
``report``, ``experiment`` and ``sweep_folder`` read through here, so that reading a saved run
neither imports the trainer nor matplotlib.

A run folder holds ``config.json`` (the :class:`~jaxseq.config.Config`), ``metrics.jsonl`` (one
row per chunk), ``summary.json``, ``checkpoints/`` and, for a sweep, ``points/<label>/``.
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxseq.config import Config, migrate
from jaxseq.errors import ConfigError


def read_jsonl(path: Path | str) -> list[dict]:
    """The rows of a JSON-lines file (``metrics.jsonl``, episode records), blank lines skipped."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def load_config(run_dir: Path | str, field: str = "resume") -> Config:
    """The config of the run folder ``run_dir``; ConfigError naming ``field`` (the option that gave
    the folder) if it has none or it is damaged."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(field, f"{run_dir} is not a run folder (no config.json)")
    try:
        return Config(**migrate(json.loads(path.read_text())))
    except (ValueError, TypeError) as err:
        raise ConfigError(field, f"{path} is not a readable jaxseq config ({err})") from None


def reading_config(run_dir: Path | str) -> Config:
    """The config to read a saved run with (``eval``, ``render``): the run's own, on the devices of
    this machine rather than those the run was trained on (``devices`` 0: all that divide the
    members), since a checkpoint restores onto any layout."""
    return load_config(run_dir, "run_dir").replace(devices=0, shard="members")

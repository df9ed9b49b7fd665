"""Output paths checked before any work starts: a command that will write a file or a folder says
what is wrong with the path at once, not after compiling and running (ConfigError naming the
option). Nothing is created here."""

from __future__ import annotations

import os
from pathlib import Path

from jaxseq.errors import ConfigError


def env_slug(env: str) -> str:
    """An env id as a piece of a folder name: ``mpe:spread?n=5`` -> ``mpe-spread-n5``."""
    return env.replace(":", "-").replace("?", "-").replace("&", "-").replace("=", "")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(path: Path | str, field: str) -> None:
    """``path`` can be a folder to write into: an existing writable folder, or one that can be
    created (its nearest existing ancestor is a writable folder)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(field, f"{path} is a file, not a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise ConfigError(field, f"cannot create {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(field, f"cannot write into {base} (permission denied)")


def check_output_file(path: Path | str, field: str) -> None:
    """``path`` can be written as a file: not a folder, and its folder exists and is writable (a
    missing folder is refused rather than made: it is more often a typing mistake)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(field, f"{path} is a folder; give a file name")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ConfigError(field, f"the folder {parent} does not exist; create it first or give another path")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(field, f"cannot write {path} (permission denied)")

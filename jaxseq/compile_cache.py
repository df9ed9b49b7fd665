"""JAX's persistent compilation cache, on by default: a program compiled once is read from disk the
next time the same program is built (same code, shapes, config, XLA flags and jaxlib).

``import jaxseq`` calls :func:`enable`. The folder, in order of precedence:

1. ``JAXSEQ_COMPILE_CACHE=off`` (or ``0``, ``false``, ``no``; the CLI's ``--no-compile-cache``): no cache.
2. The user's own JAX cache (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``'s ``jax_compilation_cache_dir``
   set before ``import jaxseq``): used as it is, with the user's thresholds.
3. ``JAXSEQ_COMPILE_CACHE=<folder>``.
4. :func:`default_folder`: the platform's per-user cache folder, e.g. ``~/.cache/jaxseq/xla``.

A cached program is the program XLA would compile: metrics are bit-identical (tests/test_compile_cache.py).
Entries are files named by a hash of the program; nothing bounds the folder's size (JAX's optional bound,
``jax_compilation_cache_max_size``, rescans every entry on each write and holds a file lock), so clear it
with ``rm -rf`` when it grows (docs/compile-cache.md gives sizes). JAX writes entries from process 0 of a
multi-process run only; processes that share the folder can write the same entry at once (tested). An
unusable folder is reported once and the run compiles without it; an unreadable entry is compiled again
(JAX warns, per entry).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path

#: The environment variable that turns the cache off or names its folder.
SWITCH = "JAXSEQ_COMPILE_CACHE"
OFF = ("0", "off", "false", "no")

#: Programs that compile faster than this are not written. Zero: on this 2-core CPU, caching also the
#: ~90 small programs a run compiles op by op (most from JaxMARL's import) made a warm mpe:spread run
#: reach its first metrics line in 10.8 s instead of 12.5 s, and the cold run no slower (21.3 s, 21.6 s).
MIN_COMPILE_SECS = 0.0


class CompileCacheWarning(UserWarning):
    """The compilation cache's folder cannot be used; the run compiles without it."""


def default_folder(environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> Path:
    """The platform's per-user cache folder for jaxseq's compiled programs (XDG on Linux)."""
    if platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif platform == "win32":
        base = Path(environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "jaxseq" / "xla"


def choose(environ: Mapping[str, str], users_folder: str | None) -> tuple[str | None, str]:
    """(folder or None, where the choice came from: "off", "yours", "JAXSEQ_COMPILE_CACHE" or "default").

    ``users_folder`` is the JAX cache folder already configured when jaxseq is imported (or None);
    one equal to jaxseq's own choice (a process started by a jaxseq process inherits it) is jaxseq's."""
    switch = environ.get(SWITCH, "").strip()
    if switch.lower() in OFF:
        return None, "off"
    ours = switch or str(default_folder(environ))
    if users_folder and users_folder != ours:
        return users_folder, "yours"
    return ours, SWITCH if switch else "default"


def _usable(folder: str) -> str | None:
    """None if ``folder`` can be created and written; otherwise the reason."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    return None


_STATE = {"folder": None, "origin": "off", "problem": None, "set": None, "told": set()}


def _configure(environ: MutableMapping[str, str], **values) -> None:
    """Set JAX config options (``jax_`` names): through ``jax.config`` once JAX is imported, else as
    the environment variables JAX reads when it is (so importing jaxseq does not import JAX: the
    host-env workers are NumPy-only processes)."""
    jax = sys.modules.get("jax")
    for name, value in values.items():
        if jax is not None:
            jax.config.update(name, value)
        else:
            environ[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)


def enable(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Turn the cache on as :func:`choose` decides; returns the folder (None when off or unusable; an
    unusable folder is reported by :func:`announce` when a run starts, so importing stays quiet).

    Called by ``import jaxseq``; it may be called again, or :func:`disable` may be, before anything
    compiles (JAX opens the folder at the first compilation)."""
    jax = sys.modules.get("jax")
    configured = jax.config.jax_compilation_cache_dir if jax is not None else environ.get("JAX_COMPILATION_CACHE_DIR")
    folder, origin = choose(environ, configured if configured != _STATE["set"] else None)
    problem = _usable(folder) if origin not in ("off", "yours") else None
    _STATE.update(folder=folder, origin=origin, problem=problem)
    _configure(environ, jax_enable_compilation_cache=folder is not None and not problem)
    if origin in ("off", "yours") or problem:
        return None if problem else folder
    _configure(environ, jax_compilation_cache_dir=folder, jax_persistent_cache_min_compile_time_secs=MIN_COMPILE_SECS)
    _STATE["set"] = folder
    return folder


def disable(environ: MutableMapping[str, str] = os.environ) -> None:
    """No cache for the rest of this process (call before anything compiles)."""
    _configure(environ, jax_enable_compilation_cache=False)
    _STATE.update(folder=None, origin="off", problem=None)


def describe() -> str:
    """One line for a run's start: where compiled programs are kept, or why they are not."""
    if _STATE["problem"]:
        folder, problem = _STATE["folder"], _STATE["problem"]
        return f"compile cache off: {folder} is not usable ({problem}); set {SWITCH} to another folder"
    if _STATE["folder"] is None:
        return "compile cache off"
    whose = " (JAX_COMPILATION_CACHE_DIR)" if _STATE["origin"] == "yours" else ""
    return f"compile cache: {_STATE['folder']}{whose}; --no-compile-cache or {SWITCH}=off turns it off"


def announce() -> None:
    """At a run's start, once per process: the folder in one line (standard output), or for an
    unusable folder a :class:`CompileCacheWarning` (the run compiles without a cache)."""
    import warnings

    if "start" in _STATE["told"]:
        return
    _STATE["told"].add("start")
    if _STATE["problem"]:
        warnings.warn(describe(), CompileCacheWarning, stacklevel=2)
    else:
        print(describe(), flush=True)


#: The starts of JAX's warnings for an entry it could not read (it compiles the program instead) or write.
JAX_ENTRY_WARNINGS = {
    "Error reading persistent compilation cache entry": "entries that cannot be read are compiled again",
    "Error writing persistent compilation cache entry": "entries could not be written",
}


def summarise(text: str) -> str | None:
    """One of JAX's warnings as the CLI shows it. JAX warns once per cache entry it cannot read or
    write; the first of each kind becomes one line naming the folder, the rest None (not shown)."""
    for start, what in JAX_ENTRY_WARNINGS.items():
        if text.startswith(start):
            if start in _STATE["told"]:
                return None
            _STATE["told"].add(start)
            folder, detail = _STATE["folder"], text.split("': ", 1)[-1]
            return f"compile cache {folder}: {what} ({detail}); `rm -rf {folder}` clears it"
    return text

"""JAX's compilation cache, on by default (jaxseq.compile_cache): which folder, the same numbers
cold and warm, concurrent writers, a damaged or unusable folder, and the switch that turns it off."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jaxseq import compile_cache
from jaxseq.cli import build_parser, main

from support.helpers import cli_args, tiny


def test_the_folder_follows_the_switch_then_the_users_own_cache_then_the_platform():
    home = {"XDG_CACHE_HOME": "/xdg"}
    assert compile_cache.choose(home, None) == ("/xdg/jaxseq/xla", "default")
    assert compile_cache.choose({**home, "JAXSEQ_COMPILE_CACHE": "/mine"}, None) == ("/mine", "JAXSEQ_COMPILE_CACHE")
    assert compile_cache.choose({**home, "JAXSEQ_COMPILE_CACHE": "/mine"}, "/jax") == ("/jax", "yours")
    for off in ("0", "off", "OFF", "false", "no"):
        assert compile_cache.choose({"JAXSEQ_COMPILE_CACHE": off}, "/jax") == (None, "off")
    assert str(compile_cache.default_folder({}, "darwin")).endswith("Library/Caches/jaxseq/xla")
    assert compile_cache.default_folder({"LOCALAPPDATA": "C:/Local"}, "win32") == Path("C:/Local/jaxseq/xla")


def test_jax_warnings_about_entries_are_shown_once_per_kind(monkeypatch):
    monkeypatch.setitem(compile_cache._STATE, "told", set())
    monkeypatch.setitem(compile_cache._STATE, "folder", "/cache")
    read = "Error reading persistent compilation cache entry for 'jit_f': error: Error -5 while decompressing data"
    first = compile_cache.summarise(read)
    assert first.startswith("compile cache /cache: entries that cannot be read are compiled again (error: Error -5")
    assert "rm -rf /cache" in first
    assert compile_cache.summarise(read.replace("jit_f", "jit_g")) is None
    assert compile_cache.summarise("Error writing persistent compilation cache entry for 'jit_f': OSError: full")
    assert compile_cache.summarise("something else") == "something else"


def test_the_commands_that_compile_take_no_compile_cache():
    parser = build_parser()
    for command in (["train"], ["eval", "run"], ["render", "run"]):
        assert parser.parse_args([*command, "--no-compile-cache"]).no_compile_cache


def _env(folder: Path) -> dict:
    env = {**os.environ, "JAXSEQ_COMPILE_CACHE": str(folder)}
    env.pop("JAX_COMPILATION_CACHE_DIR")  # the test session's cache (conftest.py) would win
    return env


#: The smallest run: the tabular game (no JaxMARL import), one seed, four chunks.
RUN = cli_args(tiny(num_seeds=1, env="tabular:game"))


def _train(out: Path, folder: Path, log_cache: bool = False) -> subprocess.Popen:
    argv = [sys.executable, "-m", "jaxseq", "train", "--out", str(out), *RUN]
    env = {**_env(folder), **({"JAX_DEBUG_LOG_MODULES": "jax._src.compiler"} if log_cache else {})}
    return subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    """(standard output, standard error) of a run that succeeded."""
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _learning(out: Path) -> list[dict]:
    """The run's metrics lines without their timing fields."""
    (run_dir,) = out.iterdir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "sps" and "seconds" not in k} for row in rows]


def _entries(folder: Path) -> dict[str, bytes]:
    """The cache's entries by key (JAX names the file ``<key>-cache``)."""
    return {p.name.removesuffix("-cache"): p.read_bytes() for p in folder.glob("*-cache")}


@pytest.mark.slow  # 35 s of subprocess runs; CI runs it in its slow step
def test_a_warm_run_reads_its_programs_gives_the_same_numbers_and_a_damaged_entry_only_costs_time(tmp_path):
    folder = tmp_path / "xla"
    # Two cold runs at once, writing the same entries into one folder.
    runs = [_train(tmp_path / f"cold{i}", folder) for i in range(2)]
    cold_out, cold_err = zip(*[_finish(proc) for proc in runs])
    assert f"compile cache: {folder}; --no-compile-cache" in cold_out[0]
    assert not any("jaxseq: warning" in err for err in cold_err), cold_err
    cold = _learning(tmp_path / "cold0")
    assert cold == _learning(tmp_path / "cold1") and len(cold) == 4
    written = _entries(folder)
    assert len(written) > 10

    # Every other entry truncated: the warm run reads every intact one (JAX's log names each hit),
    # compiles the damaged ones again, says so once, and gives the same numbers.
    damaged = sorted(written)[::2]
    for key in damaged:
        (folder / f"{key}-cache").write_bytes(written[key][:100])
    _, err = _finish(_train(tmp_path / "warm", folder, log_cache=True))
    hits = set(re.findall(r"Persistent compilation cache hit for '[^']*' with key '([^']*)'", err))
    assert hits == set(written) - set(damaged)
    warnings = [line for line in err.splitlines() if line.startswith("jaxseq: warning")]
    assert len(warnings) == 1 and "entries that cannot be read are compiled again" in warnings[0], warnings
    assert _learning(tmp_path / "warm") == cold
    assert {k: v for k, v in _entries(folder).items() if k not in damaged} == {
        k: v for k, v in written.items() if k not in damaged
    }


def test_an_unusable_folder_is_said_once_and_the_program_still_compiles(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    script = "import jax, jaxseq\nfor _ in range(2): jaxseq.compile_cache.announce()\nprint(jax.jit(abs)(-2))"
    proc = subprocess.run([sys.executable, "-c", script], env=_env(blocker / "xla"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2"]
    assert proc.stderr.count("CompileCacheWarning") == 1, proc.stderr
    assert f"compile cache off: {blocker / 'xla'} is not usable (NotADirectoryError" in proc.stderr


def test_the_switch_and_the_flag_turn_it_off(monkeypatch):
    script = "import jax, jaxseq; print(jax.config.jax_enable_compilation_cache, jaxseq.compile_cache.describe())"
    proc = subprocess.run([sys.executable, "-c", script], env=_env(Path("off")), capture_output=True, text=True)
    assert proc.stdout.split() == ["False", "compile", "cache", "off"], proc.stderr
    turned_off = []
    monkeypatch.setattr(compile_cache, "disable", lambda: turned_off.append(True))
    assert main(["train", "--no-compile-cache", "--set", "num_envs=0"]) == 2  # refused before compiling
    assert turned_off == [True]


def test_importing_jaxseq_leaves_jax_unimported_so_host_env_workers_stay_numpy_only(tmp_path):
    imports = "import os, sys, jaxseq.hostenv.worker\n"
    script = imports + "print('jax' in sys.modules, os.getenv('JAX_COMPILATION_CACHE_DIR'))"
    proc = subprocess.run([sys.executable, "-c", script], env=_env(tmp_path / "xla"), capture_output=True, text=True)
    assert proc.stdout.split() == ["False", str(tmp_path / "xla")], proc.stderr

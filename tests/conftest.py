import os
from pathlib import Path

# Tests run on CPU, deterministic and quiet.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The suite's own persistent XLA compilation cache, kept between runs in the repository's ignored
# .cache/ (delete it to start cold, as CI does): tests that build the same program again (resume,
# the CLI subprocesses, repeated trainer configurations) load it instead of compiling it, and a
# second run of the suite loads what the first compiled. A cached program is the program XLA would
# compile (tests/test_compile_cache.py). The environment carries the folder to subprocesses;
# jax.config sets it here in case a plugin imported jax before this file.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).parent.parent / ".cache" / "xla-tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Compiling is most of the suite's time and the programs run tiny batches: XLA's CPU backend without
# its LLVM optimisations compiled two typical test files in 111 s instead of 157 s. Comparisons
# are between programs built the same way (or against NumPy with tolerances), so they hold.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs", float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"])
)

# jaxmarl's MA-Brax module sets sys.stdout and sys.stderr to sys.__stdout__ / sys.__stderr__ when
# it is first imported (it silences its own import that way), which detaches pytest's capsys from
# any test that happens to import it first. Importing it here, before any test runs, keeps every
# test's capture intact.
import jaxmarl.environments  # noqa: E402, F401

#: The longest tests (subprocesses that compile several programs each) run first, so the xdist
#: workers share out the short ones around them instead of finishing on one of these alone.
FIRST = ("test_scale.py", "test_sweep.py::test_a_2x2")


#: Modules whose tests run the traced one-update cases of tests/helpers.py, labelled by test id.
TRACED = ("test_golden", "test_conformance")


def _traced_case(item) -> str:
    """The traced case a golden or conformance test runs ("" for any other test)."""
    if item.module.__name__ in TRACED and hasattr(item, "callspec"):
        return item.callspec.id
    return ""


def pytest_collection_modifyitems(items):
    # A traced case's golden and conformance tests next to each other: the xdist workers take
    # contiguous runs of the list, so both find the case in one worker's cache (one compilation
    # and one traced update instead of two).
    items.sort(key=lambda item: (not any(name in item.nodeid for name in FIRST), _traced_case(item)))

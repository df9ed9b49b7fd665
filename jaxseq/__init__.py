"""jaxseq: sequential (agent-by-agent) multi-agent policy optimisation compiled end to end in JAX."""

import os as _os

__version__ = "0.1.0"

# On CPU, XLA's multi-threaded Eigen pool made the SMAX training chunk about 4x slower on a 2-core
# machine (many small matmuls inside nested scans); single-threaded Eigen is the default here.
# Set the flag in XLA_FLAGS yourself before importing jaxseq to override.
if "xla_cpu_multi_thread_eigen" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

# JAX's persistent compilation cache, on unless switched off (jaxseq/compile_cache.py).
from jaxseq import compile_cache as _compile_cache  # noqa: E402

_compile_cache.enable()

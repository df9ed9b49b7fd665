"""jaxseq: sequential (agent-by-agent) multi-agent policy optimisation compiled end to end in JAX."""

import os as _os

__version__ = "0.1.0"

# XLA's multi-threaded Eigen pool on CPU can deadlock on the nested scans of a training chunk
# (observed with jax 0.10 on 2 cores: the program stops with every thread idle). Single-threaded
# Eigen avoids it and was not slower here; set XLA_FLAGS yourself before importing jaxseq to override.
if "xla_cpu_multi_thread_eigen" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

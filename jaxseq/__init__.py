"""jaxseq: sequential (agent-by-agent) multi-agent policy optimisation compiled end to end in JAX."""

__version__ = "0.1.0"

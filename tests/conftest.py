import os

# Tests run on CPU, deterministic and quiet.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

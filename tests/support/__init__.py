"""What the tests share and are not tests themselves: config and network helpers (``helpers``),
the host-env stand-ins that worker processes import by name (``host_standins``, ``smac_standin``:
``support.host_standins``), and the script the multi-device test runs (``scale_checks``)."""

"""The errors a user sees: a bad configuration (before anything compiles), and a run that stopped."""


class ConfigError(ValueError):
    """A bad configuration value. The message names the field and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class RunDiverged(RuntimeError):
    """A chunk produced a non-finite loss or parameter. Its state was discarded: the checkpoints
    hold the last finite state (after ``last_good_chunk``)."""

    def __init__(
        self, chunk: int, bad: dict[int, list[str]], last_good_chunk: int, labels: dict[int, str] | None = None
    ):
        self.chunk, self.bad, self.last_good_chunk = chunk, bad, last_good_chunk
        named = {m: f"member {m} ({labels[m]})" if labels and m in labels else f"member {m}" for m in bad}
        members = "; ".join(f"{named[m]}: {', '.join(names)}" for m, names in sorted(bad.items()))
        kept = (
            f"the checkpoints hold chunk {last_good_chunk}, the last finite state"
            if last_good_chunk
            else "no chunk had finished, so nothing was checkpointed"
        )
        super().__init__(f"chunk {chunk} diverged (non-finite {members}); it was discarded, and {kept}")

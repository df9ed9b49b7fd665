"""The errors a user sees: a bad configuration (before anything compiles), and a run that stopped."""

from pathlib import Path


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


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run whose folder exists; says what the folder holds (``chunk``: its newest
    checkpoint, None without one)."""

    def __init__(self, run_dir: Path, chunk: int | None):
        self.run_dir, self.chunk = run_dir, chunk
        if chunk is None:
            text = (
                f"interrupted before the first chunk finished; {run_dir} holds no checkpoint "
                f"(train it again with --resume {run_dir} --start-over)"
            )
        else:
            text = f"interrupted; {run_dir} is checkpointed after chunk {chunk} (continue with --resume {run_dir})"
        super().__init__(text)

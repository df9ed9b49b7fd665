"""Errors raised before anything compiles."""


class ConfigError(ValueError):
    """A bad configuration value. The message names the field and what is allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")

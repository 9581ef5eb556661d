r"""The error of a refused setting, in a module of its own so that the command lines raise it without
loading torch or RecBole (``--help`` answers at once)."""


class ConfigError(ValueError):
    r"""A configuration value is refused; the message names the key, the value and what is accepted."""


"""Errors that plugins raise and the runtime reports."""


class PluginError(Exception):
    """A plugin call failed; the message says why in words an operator can act on."""


class ValidationError(PluginError):
    """Properties given to a plugin are not acceptable.

    `path` is the JSON path of the fault relative to the properties (may be empty).
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.reason = message

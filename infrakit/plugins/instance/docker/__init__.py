"""The Docker instance plugin: each instance is a container on one Docker engine.

`options` reads its properties (modelled on `docker run`), `plugin` is the plugin itself, and
`events` follows the engine's event stream so that a lost container is seen at once.
"""

from infrakit.plugins.instance.docker.options import (
    DEFAULT_NETWORK_MODE,
    LABEL_LOGICAL_ID,
    PRIVATE_PREFIX,
    DockerOptions,
    MountOptions,
    parse_memory,
    parse_options,
)
from infrakit.plugins.instance.docker.plugin import (
    WATCH_EVENTS,
    DockerInstancePlugin,
    missing_image_message,
)

__all__ = [
    "DEFAULT_NETWORK_MODE",
    "LABEL_LOGICAL_ID",
    "PRIVATE_PREFIX",
    "WATCH_EVENTS",
    "DockerInstancePlugin",
    "DockerOptions",
    "MountOptions",
    "missing_image_message",
    "parse_memory",
    "parse_options",
]

"""The vagrant instance plugin: each instance is a Vagrant machine in its own directory.

`options` reads its properties, `vagrantfile` renders each machine's Vagrantfile, and `plugin`
is the plugin itself.
"""

from infrakit.plugins.instance.vagrant.options import (
    DEFAULT_PROVIDER,
    DockerOptions,
    VagrantOptions,
    parse_options,
)
from infrakit.plugins.instance.vagrant.plugin import (
    ID_PREFIX,
    RECORD,
    TAGS,
    VAGRANTFILE,
    VagrantInstancePlugin,
)
from infrakit.plugins.instance.vagrant.vagrantfile import (
    BOOT_SCRIPT,
    BOOT_STATUS,
    INSTANCE_LABEL,
    render_vagrantfile,
    ruby_string,
)

__all__ = [
    "BOOT_SCRIPT",
    "BOOT_STATUS",
    "DEFAULT_PROVIDER",
    "ID_PREFIX",
    "INSTANCE_LABEL",
    "RECORD",
    "TAGS",
    "VAGRANTFILE",
    "DockerOptions",
    "VagrantInstancePlugin",
    "VagrantOptions",
    "parse_options",
    "render_vagrantfile",
    "ruby_string",
]

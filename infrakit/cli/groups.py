"""`infrakit group`: the Group API commands of infrakit/cli/client.py and the subcommands kept in
modules of their own, gathered here so that each registers itself on the one group."""

from __future__ import annotations

from infrakit.cli import activity as activity  # registers `group activity`
from infrakit.cli import maintenance as maintenance  # promote, suspend, unsuspend
from infrakit.cli import revisions as revisions  # history, rollback, pause, resume, scale
from infrakit.cli.client import group as group

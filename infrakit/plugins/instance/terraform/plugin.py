"""The Terraform instance plugin: each instance is one resource that Terraform makes, declared
in its own file `instance-<id>.tf.json` in the plugin's working directory.

Provision writes the file and waits for the `terraform apply` that includes it; destroy removes
the file and waits for the apply after; label rewrites the tags in the file and applies. Applies
run one at a time, on one thread, batching every change that arrived meanwhile (`applier`).

Describe answers from the files and `terraform.tfstate`: an instance is live while its resource
is in the state and not tainted, or while a call of this plugin is still applying it. A file
whose resource is missing from the state or tainted once its apply is over (it failed, was
tainted, or `terraform state rm`ed) is no instance: its file is removed at once, so the next
apply destroys what is left instead of making it again beside the group's replacement. When
nothing has been applied for `refresh` seconds, `terraform refresh` brings the state up to date
with what exists (a resource deleted out of band leaves it).

One plugin (one process) per directory: terraform's own state lock guards the state, but a
second plugin would take the first's files in flight for dead ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infrakit.plugins._atomic import remove_stale, write_json_atomic
from infrakit.plugins.instance.terraform import resource, state
from infrakit.plugins.instance.terraform.applier import Applier
from infrakit.plugins.instance.terraform.cli import (
    INTERRUPT_GRACE,
    Outcome,
    Terraform,
    find_plugin_dir,
    find_terraform,
    has_providers,
)
from infrakit.plugins.instance.terraform.options import (
    DEFAULT_APPLY_TIMEOUT,
    DEFAULT_REFRESH,
    TerraformOptions,
    TerraformProperties,
    parse_properties,
)
from infrakit.plugins.instance.terraform.workdir import WorkDir
from infrakit.spi.errors import PluginError, ValidationError
from infrakit.spi.instance import (
    Description,
    InstanceID,
    InstancePlugin,
    Spec,
    Sweepable,
    tags_match,
)

log = logging.getLogger(__name__)

# Declares nothing; it is there so that `terraform apply` runs (and destroys the last
# resource) when no instance is left: Terraform refuses to apply a directory with no files.
PLACEHOLDER = "infrakit.tf.json"
# How many terraform commands one apply may run: init, apply, and both again when a provider
# appeared since the last init.
_COMMANDS_PER_APPLY = 4


@dataclass(frozen=True)
class Applied:
    """What one apply did: terraform's outcome and the state after it (None if unreadable)."""

    outcome: Outcome
    resources: dict[str, state.Resource] | None


class TerraformInstancePlugin(InstancePlugin, Sweepable):
    """Instances as Terraform resources declared by one file each in `directory`.

    `terraform` is the binary (default: see `cli.find_terraform`), `plugin_dir` the providers'
    directory given to `terraform init -plugin-dir` (default: beside the real binary, if any
    are there), `apply_timeout` how long one terraform command may run, `refresh` how long
    the plugin goes without applying before it refreshes the state (0: never). Raises
    FileNotFoundError if there is no terraform to run or `plugin_dir` is not a directory.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        terraform: Path | None = None,
        plugin_dir: Path | None = None,
        apply_timeout: float = DEFAULT_APPLY_TIMEOUT,
        refresh: float = DEFAULT_REFRESH,
    ) -> None:
        binary = find_terraform(terraform)
        if plugin_dir is not None and not plugin_dir.is_dir():
            raise FileNotFoundError(f"PluginDir option: no directory at {plugin_dir}")
        self._dir = Path(directory)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        providers = plugin_dir if plugin_dir is not None else find_plugin_dir(binary)
        self.terraform = Terraform(binary, self._dir, providers, apply_timeout)
        # A change waits for the apply that runs, then for its own.
        self._wait_timeout = 2 * (_COMMANDS_PER_APPLY * apply_timeout + INTERRUPT_GRACE)
        self._applier: Applier[Applied] = Applier(
            self._apply, f"terraform-apply:{self._dir}", idle=self._refresh, idle_every=refresh
        )
        self._initialised = False  # only the applier's thread uses it
        self._workdir = WorkDir(self._dir)
        self._lock = threading.Lock()  # guards `_busy`; never held across I/O
        self._busy: Counter[str] = Counter()  # instances a call is applying
        self._write_lock = threading.Lock()  # serialises the read-modify-write of `label`

    @classmethod
    def from_options(cls, options: TerraformOptions, home: Path) -> TerraformInstancePlugin:
        """The plugin a cluster file's options describe; its directory defaults to
        `<home>/instances/terraform`."""
        return cls(
            options.dir or Path(home) / "instances" / "terraform",
            terraform=options.terraform,
            plugin_dir=options.plugin_dir,
            apply_timeout=options.apply_timeout,
            refresh=options.refresh,
        )

    @property
    def directory(self) -> Path:
        """The working directory: one file per instance, Terraform's state and its `.terraform`."""
        return self._dir

    @property
    def applies(self) -> int:
        """How many applies this plugin has run."""
        return self._applier.applies

    # -- the instance SPI ------------------------------------------------------------------

    def validate(self, properties: Any) -> None:
        """Check the properties' shape, and that the resource's provider is installed where
        terraform will look for it (when the plugin knows its providers' directory)."""
        self._properties(properties)

    def provision(self, spec: Spec) -> InstanceID:
        """Write the instance's file, wait for the apply that includes it, and return its ID
        once its resource is in the state. If the apply failed for it, its file is removed
        (what is left is destroyed by the next apply) and PluginError says what terraform said.
        """
        properties = self._properties(spec.properties)
        instance_id = f"{resource.FILE_PREFIX}{secrets.token_hex(8)}"
        document = resource.render(properties, spec, instance_id)
        address = f"{properties.type}.{instance_id}"
        path = self._workdir.path(instance_id)
        with self._applying(instance_id):
            try:
                write_json_atomic(path, document)
            except OSError as error:
                raise PluginError(f"cannot write {path}: {error}") from None
            try:
                applied = self._applier.request().wait(self._wait_timeout)
            except PluginError:
                self._abandon(instance_id)
                raise
            made = self._resources(applied).get(instance_id)
            if made is None or made.tainted:
                self._abandon(instance_id)
                raise PluginError(
                    f"terraform could not create {address}: {applied.outcome.errors(address)}"
                )
        log.debug("made %s (%s)", address, made.id)
        return instance_id

    def destroy(self, instance_id: InstanceID) -> None:
        """Remove the instance's file and wait for the apply that destroys its resource. An
        instance that is already gone is not an error."""
        self._check_id(instance_id)
        path = self._workdir.path(instance_id)
        try:
            path.unlink()
        except FileNotFoundError:
            if instance_id not in self._workdir.state()[0]:
                return
        except OSError as error:
            raise PluginError(f"cannot remove {path}: {error}") from None
        applied = self._applier.request().wait(self._wait_timeout)
        left = self._resources(applied).get(instance_id)
        if left is not None:
            raise PluginError(
                f"terraform could not destroy {left.address}: "
                f"{applied.outcome.errors(left.address)}"
            )

    def describe_instances(self, tags: Mapping[str, str]) -> list[Description]:
        """Every live instance whose tags include all of `tags`: from the files, and the state
        (files and state are parsed again only when they changed)."""
        wanted = {str(k): str(v) for k, v in tags.items()}
        self._applier.start()  # refreshes the state from now on
        files = self._workdir.files()  # first, then what is in flight: see `_applying`
        with self._lock:
            busy = set(self._busy)
        resources, whole = self._workdir.state()
        live: list[Description] = []
        dead: list[tuple[str, state.Resource | None]] = []
        for instance_id, declared in files.items():
            made = resources.get(instance_id)
            if instance_id in busy or (made is not None and not made.tainted):
                if tags_match(declared.tags, wanted):
                    live.append(_describe(declared, made))
            elif whole:
                dead.append((instance_id, made))
        if dead:
            self._bury(dead)
        live.sort(key=lambda d: d.id)
        return live

    def label(self, instance_id: InstanceID, labels: Mapping[str, str]) -> None:
        """Merge `labels` into the instance's tags in its file and apply (which may replace
        the resource: a null_resource's triggers force a new one)."""
        self._check_id(instance_id)
        path = self._workdir.path(instance_id)
        with self._applying(instance_id):
            with self._write_lock:
                try:
                    document = json.loads(path.read_text(encoding="utf-8"))
                    declared = resource.read(document, instance_id)
                except FileNotFoundError:
                    raise PluginError(f"no such instance: {instance_id}") from None
                except (OSError, ValueError) as error:
                    raise PluginError(f"cannot read {path}: {error}") from None
                if all(declared.tags.get(k) == v for k, v in labels.items()):
                    return
                try:
                    write_json_atomic(path, resource.relabel(document, instance_id, labels))
                except OSError as error:
                    raise PluginError(f"cannot write {path}: {error}") from None
            applied = self._applier.request().wait(self._wait_timeout)
            made = self._resources(applied).get(instance_id)
            if made is None or made.tainted:
                address = f"{declared.type}.{instance_id}"
                raise PluginError(
                    f"terraform could not relabel {address}: {applied.outcome.errors(address)}"
                )

    def sweep(self, tags: Mapping[str, str]) -> list[InstanceID]:
        """Remove the files of the instances whose tags include all of `tags` and that are not
        live, temp files whose writer is gone, and apply until no resource without a file is
        left in the state; return the IDs of the instances swept."""
        wanted = {str(k): str(v) for k, v in tags.items()}
        remove_stale(self._dir)
        files = self._workdir.files()
        with self._lock:
            busy = set(self._busy)
        resources, whole = self._workdir.state()
        if not whole:
            raise PluginError(f"cannot read {self._dir / state.STATE_FILE} whole; try again")
        swept = []
        for instance_id, declared in files.items():
            made = resources.get(instance_id)
            alive = made is not None and not made.tainted
            if instance_id not in busy and not alive and tags_match(declared.tags, wanted):
                with contextlib.suppress(FileNotFoundError):
                    self._workdir.path(instance_id).unlink()
                swept.append(instance_id)
        kept = set(files) - set(swept)
        orphans = {
            name: made
            for name, made in resources.items()
            if resource.is_instance_id(name) and name not in kept and name not in busy
        }
        if orphans:
            applied = self._applier.request().wait(self._wait_timeout)
            left = [name for name in orphans if name in self._resources(applied)]
            if left:
                raise PluginError(
                    f"terraform could not destroy {', '.join(sorted(left))}: "
                    f"{applied.outcome.errors()}"
                )
        swept += [n for n, r in orphans.items() if n not in swept and _has_tags(r, wanted)]
        return sorted(swept)

    def close(self) -> None:
        """Stop applying once the apply that runs is over; the resources stay."""
        self._applier.close()

    # -- applying --------------------------------------------------------------------------

    def _apply(self) -> Applied:
        """One apply (on the applier's thread): `terraform init` first if it has not run or a
        provider appeared since, then `terraform apply`, then the state it left."""
        placeholder = self._dir / PLACEHOLDER
        if not placeholder.exists():
            write_json_atomic(placeholder, {})
        outcome = None
        if not self._initialised:
            outcome = self._init()
        if outcome is None:
            outcome = self.terraform.apply()
            if not outcome.ok and outcome.says("terraform init"):
                self._initialised = False
                outcome = self._init() or self.terraform.apply()
        if not outcome.ok:
            log.warning(
                "terraform %s in %s failed: %s", outcome.command, self._dir, outcome.errors()
            )
        try:
            return Applied(outcome, state.read(self._dir))
        except (OSError, ValueError):
            return Applied(outcome, None)

    def _refresh(self) -> None:
        """Refresh the state (on the applier's thread, when it has not applied for a while),
        once terraform has been initialised and there is a state."""
        if not (self._dir / state.STATE_FILE).exists():
            return
        if not self._initialised and self._init() is not None:
            return
        outcome = self.terraform.refresh()
        if not outcome.ok:
            log.warning("terraform refresh in %s failed: %s", self._dir, outcome.errors())

    def _init(self) -> Outcome | None:
        """Run `terraform init`; None once it succeeded, else its outcome."""
        outcome = self.terraform.init()
        if not outcome.ok:
            return outcome
        self._initialised = True
        return None

    def _resources(self, applied: Applied) -> dict[str, state.Resource]:
        return applied.resources if applied.resources is not None else self._workdir.state()[0]

    @contextlib.contextmanager
    def _applying(self, instance_id: str) -> Iterator[None]:
        """Count the instance as live while the block applies it. Entered before its file is
        written, so a look that lists the file and then reads this set finds it here (or
        finds the apply over and its resource in the state, read after)."""
        with self._lock:
            self._busy[instance_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[instance_id] -= 1
                if self._busy[instance_id] <= 0:
                    del self._busy[instance_id]

    def _abandon(self, instance_id: str) -> None:
        """Give up an instance whose apply failed: remove its file; what was made of it (a
        tainted resource) is destroyed by the next apply, requested now."""
        with contextlib.suppress(FileNotFoundError):
            self._workdir.path(instance_id).unlink()
        if instance_id in self._workdir.state()[0]:
            with contextlib.suppress(PluginError):
                self._applier.request()

    def _bury(self, dead: list[tuple[str, state.Resource | None]]) -> None:
        """Remove the files of instances found dead (each is logged once: its file goes), and
        request an apply to destroy the tainted resources among them."""
        destroy = False
        for instance_id, made in dead:
            try:
                self._workdir.path(instance_id).unlink()
            except FileNotFoundError:
                continue  # removed meanwhile (a failed provision, a destroy)
            except OSError as error:
                log.warning("cannot remove the file of dead instance %s: %s", instance_id, error)
                continue
            why = "is tainted" if made is not None else "is not in terraform's state"
            log.warning(
                "instance %s is gone: its resource %s; removed its file (the next apply "
                "destroys what is left, and its group replaces it)",
                instance_id,
                why,
            )
            destroy = destroy or made is not None
        if destroy:
            with contextlib.suppress(PluginError):
                self._applier.request()

    # -- checks ----------------------------------------------------------------------------

    def _properties(self, properties: Any) -> TerraformProperties:
        parsed = parse_properties(properties)
        providers = self.terraform.plugin_dir
        if providers is not None and not has_providers(providers, parsed.provider):
            path = "Value.provider" if "provider" in parsed.value else "Type"
            raise ValidationError(
                f"no Terraform provider {parsed.provider!r} in {providers} (no "
                f"terraform-provider-{parsed.provider}_* there): install it there, or set the "
                "plugin's PluginDir option",
                path=path,
            )
        return parsed

    @staticmethod
    def _check_id(instance_id: InstanceID) -> None:
        if not resource.is_instance_id(instance_id):
            raise PluginError(f"not an instance of the terraform plugin: {instance_id!r}")


def _describe(declared: resource.InstanceFile, made: state.Resource | None) -> Description:
    properties: dict[str, Any] = {
        "Type": declared.type,
        "Address": f"{declared.type}.{declared.instance_id}",
    }
    if made is not None:
        properties["ResourceID"] = made.id
        properties["Attributes"] = made.attributes
    return Description(
        id=declared.instance_id,
        logical_id=declared.logical_id,
        tags=declared.tags,
        properties=properties,
    )


def _has_tags(made: state.Resource, wanted: Mapping[str, str]) -> bool:
    """Whether a resource's attributes hold every wanted tag, in whatever map (`tags.K`,
    `triggers.K`...): its file, which named the map, is gone."""
    return all(
        any(key.endswith(f".{tag}") and value == text for key, value in made.attributes.items())
        for tag, text in wanted.items()
    )

"""The `terraform` program: where it is, where its providers are, and running `init` and
`apply` in one directory with a timeout, its output captured, never reaching the network."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from infrakit.duration import format_duration

# No version check, no colour, no prompt, no hints meant for a person at a terminal.
ENVIRONMENT = {"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}
EXTRA = "terraform"  # the setup.cfg extra that installs terraform and the null provider
# Terraform stops cleanly on SIGINT (and saves its state): how long it is given before SIGKILL.
INTERRUPT_GRACE = 30.0
# How long an apply waits for the state lock that someone else's terraform holds.
LOCK_TIMEOUT = "60s"
_MAX_ERROR_LINES = 12


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_terraform(configured: Path | None = None) -> Path:
    """The terraform to run: `configured`, else the one installed beside this Python (by
    `pip install 'infrakit[terraform]'`, with its providers), else `terraform` on PATH.

    Raises FileNotFoundError saying how to get one.
    """
    if configured is not None:
        if not _executable(configured):
            raise FileNotFoundError(
                f"Terraform option: no executable file at {configured} (the terraform binary)"
            )
        return configured
    beside = Path(sys.prefix) / "lib" / "terraform"
    if _executable(beside):
        return beside
    on_path = shutil.which("terraform")
    if on_path is not None:
        return Path(on_path)
    raise FileNotFoundError(
        f"terraform is not installed: pip install 'infrakit[{EXTRA}]' (it brings Terraform "
        "0.11 and the null provider), or set the plugin's Terraform option to a terraform binary"
    )


def find_plugin_dir(terraform: Path) -> Path | None:
    """The directory of the real `terraform` binary (links followed) if providers
    (`terraform-provider-*`) are installed beside it, else None."""
    directory = terraform.resolve().parent
    return directory if has_providers(directory) else None


def has_providers(directory: Path, name: str = "") -> bool:
    """Whether `directory` holds a provider (called `name`, if given) as Terraform 0.11 names
    them: `terraform-provider-NAME` or `terraform-provider-NAME_vX.Y.Z...`."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return False
    prefix = f"terraform-provider-{name}"
    return any(
        entry.startswith(prefix) and (not name or entry[len(prefix) :][:1] in ("", "_"))
        for entry in entries
    )


@dataclass(frozen=True)
class Outcome:
    """How one terraform command ended: its exit status (None: stopped at its timeout) and its
    output."""

    command: str
    status: int | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0

    def says(self, text: str) -> bool:
        return text in self.stdout or text in self.stderr

    def errors(self, about: str = "") -> str:
        """Terraform's error lines (those naming `about` alone if any do), else its last lines:
        what an operator needs to see, without the paragraphs of advice around them."""
        lines = [line.strip() for line in (self.stderr + "\n" + self.stdout).splitlines()]
        wanted = [
            line
            for line in lines
            if line.startswith(("Error", "* ")) and line not in ("Error: Error applying plan:",)
        ]
        if about:
            mine = [line for line in wanted if about in line]
            wanted = mine or wanted
        if not wanted:
            wanted = [line for line in self.stderr.splitlines() if line.strip()][-3:]
        if self.status is None:
            wanted.append(f"terraform {self.command} did not finish in time and was stopped")
        text = "; ".join(dict.fromkeys(wanted[:_MAX_ERROR_LINES]))
        return text or f"terraform {self.command} exited with status {self.status}"


class Terraform:
    """Runs `terraform` in `directory`: the binary `binary`, the providers in `plugin_dir`
    (None: wherever terraform finds them), each command stopped after `timeout` seconds."""

    def __init__(
        self, binary: Path, directory: Path, plugin_dir: Path | None, timeout: float
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.plugin_dir = plugin_dir
        self.timeout = timeout

    def init(self) -> Outcome:
        """`terraform init`: record where the providers are; never download any."""
        args = ["init", "-input=false", "-no-color", "-get-plugins=false"]
        if self.plugin_dir is not None:
            args.append(f"-plugin-dir={self.plugin_dir}")
        return self.run(*args)

    def apply(self) -> Outcome:
        """`terraform apply`: make the resources what the directory's files declare."""
        return self.run(
            "apply", "-auto-approve", "-input=false", "-no-color", f"-lock-timeout={LOCK_TIMEOUT}"
        )

    def refresh(self) -> Outcome:
        """`terraform refresh`: update the state from what exists (a resource deleted out of
        band leaves it)."""
        return self.run("refresh", "-input=false", "-no-color", f"-lock-timeout={LOCK_TIMEOUT}")

    def run(self, *args: str) -> Outcome:
        """Run `terraform ARGS` in the directory, in a process group of its own. At the timeout
        it is interrupted (terraform then stops and saves its state), killed if it lingers."""
        command = args[0] if args else ""
        try:
            child = subprocess.Popen(
                [str(self.binary), *args],
                cwd=self.directory,
                env={**os.environ, **ENVIRONMENT},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except OSError as error:
            return Outcome(command, 127, "", f"Error: cannot run {self.binary}: {error}")
        try:
            stdout, stderr = child.communicate(timeout=self.timeout)
            return Outcome(command, child.returncode, stdout, stderr)
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGINT)
            try:
                stdout, stderr = child.communicate(timeout=INTERRUPT_GRACE)
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                stdout, stderr = child.communicate()
            took = format_duration(self.timeout)
            return Outcome(command, None, stdout, stderr + f"\nstopped after {took}")
        finally:
            if child.poll() is None:  # interrupted by an exception of ours: leave no orphan
                _signal_group(child, signal.SIGKILL)
                child.wait()


def _signal_group(child: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(child.pid, signum)

"""The README's walkthrough, pasted line by line into a fresh shell in a fresh copy of the
checkout (scripts/readme_walkthrough.py): `make demo` builds its own venv and runs, the second
terminal's commands heal and destroy, and nothing of the demo is left afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import environments, require

REPO = Path(__file__).resolve().parents[2]


def tracked_files() -> list[str]:
    """The checkout's files as a commit of its working tree would hold them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    return [name for name in listed.stdout.decode().split("\0") if name]


@pytest.fixture
def fresh_checkout() -> Iterator[Path]:
    """A copy of the checkout's tracked files (no .venv, no .infrakit-demo), at a short path:
    the demo's ipc sockets live inside it."""
    require("git", shutil.which("git") is not None)
    root = Path(tempfile.mkdtemp(prefix="walk-"))
    try:
        for name in tracked_files():
            source, target = REPO / name, root / name
            if source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        yield root
    finally:
        home = str(root / ".infrakit-demo")
        for pid, env in environments().items():  # whatever a failed run left running
            if env.get("INFRAKIT_HOME") == home:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_readme_walkthrough_runs_as_written_and_leaves_nothing(fresh_checkout: Path) -> None:
    walked = subprocess.run(
        [sys.executable, str(fresh_checkout / "scripts" / "readme_walkthrough.py")],
        cwd=fresh_checkout,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    assert walked.returncode == 0, walked.stdout[-6000:] + walked.stderr[-3000:]
    home = fresh_checkout / ".infrakit-demo"
    left = [pid for pid, env in environments().items() if env.get("INFRAKIT_HOME") == str(home)]
    assert left == [], f"processes of the demo still run: {left}"
    instances = home / "instances" / "process"
    assert not instances.exists() or list(instances.iterdir()) == []

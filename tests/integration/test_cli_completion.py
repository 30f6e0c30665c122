"""Shell completion through click's own mechanism, as docs/cli.md tells users to set it up:
`_INFRAKIT_COMPLETE=bash_source infrakit` prints the script, and the script's question for
`infrakit gr<TAB>` is answered with `group` (and the lazy `group` subcommands too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

INFRAKIT = Path(sys.executable).parent / "infrakit"  # the entry point, named as users type it


def complete(tmp_path: Path, shell_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT")}
    env["INFRAKIT_HOME"] = str(tmp_path / "home")
    return subprocess.run(
        [str(INFRAKIT)], env={**env, **shell_env}, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_script_is_produced(shell: str, tmp_path: Path) -> None:
    out = complete(tmp_path, {"_INFRAKIT_COMPLETE": f"{shell}_source"})
    assert out.returncode == 0, out.stderr
    assert "_INFRAKIT_COMPLETE" in out.stdout and f"{shell}_complete" in out.stdout


def test_completing_gr_offers_group(tmp_path: Path) -> None:
    out = complete(
        tmp_path,
        {"_INFRAKIT_COMPLETE": "bash_complete", "COMP_WORDS": "infrakit gr", "COMP_CWORD": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["plain,group"]
    sub = complete(
        tmp_path,
        {
            "_INFRAKIT_COMPLETE": "bash_complete",
            "COMP_WORDS": "infrakit group sta",
            "COMP_CWORD": "2",
        },
    )
    assert sub.stdout.split() == ["plain,status"]

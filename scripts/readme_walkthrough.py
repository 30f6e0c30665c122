#!/usr/bin/env python3
"""Paste the README's walkthrough, line by line, into a fresh shell, as a newcomer would.

Every ```sh block of README.md, in order, up to `<!-- walkthrough: end -->`, is the
walkthrough. Its lines go to one shell ("terminal 2": cd and export carry over), each must
exit 0; except that a line running something in the foreground until Ctrl-C (`make demo`,
`infrakit run ...`) is started in a terminal of its own, and `make test` (what runs this
script in CI) is not run again. Two HTML comments, which Markdown does not show, steer it:

- `<!-- walkthrough: skip -->` before a block: the block is not run (e.g. another host).
- `<!-- walkthrough: expect REGEX -->` after a block: wait until a background terminal prints
  a line matching REGEX after that block started, as a reader waits for the line the README
  promises.

The shell's environment is a fresh login's: PATH without any venv, HOME, USER, LANG, TERM.
When it is over, the background terminals get Ctrl-C and must stop. Usage:
`python3 scripts/readme_walkthrough.py [CHECKOUT]` (default: the checkout it is in); the
test in tests/e2e runs it on a fresh clone. Exit status 0 when every line did what it should.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LINE_TIMEOUT = 600.0
"""Seconds one pasted line may take (the first `make demo` builds a venv from the network)."""
EXPECT_TIMEOUT = 600.0
"""Seconds to wait for a line a background terminal should print."""
STOP_TIMEOUT = 60.0
"""Seconds a background terminal has to stop after Ctrl-C."""

DIRECTIVE = re.compile(r"<!--\s*walkthrough:\s*(skip|end|expect)\s*(.*?)\s*-->")
FOREGROUND = re.compile(r"^(make demo|infrakit run)\b")
FRESH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class WalkthroughFailed(Exception):
    """A line failed, or a promised line never came; the message says which and shows output."""


@dataclass
class Block:
    """One ```sh block of the walkthrough and what to wait for once it has run."""

    lineno: int
    lines: list[str]
    expect: list[str] = field(default_factory=list)


def walkthrough(readme: str) -> list[Block]:
    """The blocks of `readme` to run, with their `expect` directives."""
    blocks: list[Block] = []
    skip = False
    fence: list[str] | None = None
    start = 0
    for number, line in enumerate(readme.splitlines(), 1):
        if fence is not None:
            if line.strip() == "```":
                if not skip:
                    blocks.append(Block(start, joined(fence)))
                skip, fence = False, None
            else:
                fence.append(line.strip())
            continue
        if line.strip() == "```sh":
            fence, start = [], number
            continue
        for kind, argument in DIRECTIVE.findall(line):
            if kind == "end":
                return blocks
            if kind == "skip":
                skip = True
            elif blocks:
                blocks[-1].expect.append(argument)
    return blocks


def joined(lines: list[str]) -> list[str]:
    """`lines` with backslash continuations joined, blank and comment-only lines dropped."""
    result: list[str] = []
    pending = ""
    for line in lines:
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip() and not line.lstrip().startswith("#"):
            result.append(line)
    return result


def fresh_env() -> dict[str, str]:
    """What a new terminal has: no venv, no INFRAKIT_ setting, nothing of this process."""
    keep = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "CI")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    return {**env, "PATH": FRESH_PATH, "TERM": "dumb"}


class Terminal:
    """A background terminal: one foreground command whose output is kept, line by line."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.command = command
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-c", f"exec {command}"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C goes to it alone, as in its own terminal
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            sys.stdout.write(f"  [1] {line}")
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def count(self) -> int:
        with self._lock:
            return len(self.lines)

    def find(self, pattern: str, after: int) -> bool:
        with self._lock:
            return any(re.search(pattern, line) for line in self.lines[after:])

    def tail(self, n: int = 30) -> str:
        with self._lock:
            return "\n".join(self.lines[-n:])

    def interrupt(self) -> int | None:
        """Ctrl-C, then its exit status once it stopped (None if it would not)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return None


class Shell:
    """Terminal 2: one bash reading pasted lines; each line's status is read back after it."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._output: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._output.put(line)
        self._output.put(None)

    def paste(self, line: str) -> tuple[int, str]:
        """Run `line` as if pasted; its exit status and what it printed."""
        assert self.process.stdin is not None
        marker = f"@@walkthrough-{time.monotonic_ns()}@@"
        # The marker comes from printf so that the pasted text itself never matches it.
        self.process.stdin.write(f"{line}\nprintf '%s %s\\n' \"$?\" '{marker}'\n")
        self.process.stdin.flush()
        printed: list[str] = []
        deadline = time.monotonic() + LINE_TIMEOUT
        while True:
            try:
                out = self._output.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise WalkthroughFailed(
                    f"`{line}` did not finish within {LINE_TIMEOUT:.0f}s:\n" + "".join(printed)
                ) from None
            if out is None:
                raise WalkthroughFailed(f"the shell exited during `{line}`:\n" + "".join(printed))
            if out.rstrip("\n").endswith(marker):
                return int(out.split()[0]), "".join(printed)
            printed.append(out)
            sys.stdout.write(f"  [2] {out}")

    def close(self) -> None:
        """Stop the shell and every job it left in the background (e.g. `cmd &`)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


def run(checkout: Path) -> None:
    """Run the walkthrough of `checkout`'s README.md there; WalkthroughFailed if it fails."""
    blocks = walkthrough((checkout / "README.md").read_text())
    if not blocks:
        raise WalkthroughFailed("README.md has no ```sh block to run")
    env = fresh_env()
    terminals: list[Terminal] = []
    shell = Shell(checkout, env)
    try:
        for block in blocks:
            marks = [terminal.count() for terminal in terminals]
            for line in block.lines:
                _run_line(line, shell, terminals, checkout, env)
            marks += [0] * (len(terminals) - len(marks))
            for pattern in block.expect:
                _expect(pattern, terminals, marks, block)
        for terminal in terminals:
            print(f"$ Ctrl-C in the terminal of `{terminal.command}`")
            status = terminal.interrupt()
            if status is None:
                raise WalkthroughFailed(
                    f"`{terminal.command}` did not stop within {STOP_TIMEOUT:.0f}s of Ctrl-C"
                )
    finally:
        shell.close()
        for terminal in terminals:
            if terminal.process.poll() is None:
                terminal.interrupt()


def _run_line(
    line: str, shell: Shell, terminals: list[Terminal], checkout: Path, env: dict[str, str]
) -> None:
    command = line.split("#", 1)[0].strip()
    if command == "make test":
        print(f"$ {line}    (not run: it is what runs this walkthrough)")
        return
    if FOREGROUND.match(command):
        print(f"$ {command}    (in a terminal of its own)")
        terminals.append(Terminal(command, checkout, env))
        return
    print(f"$ {line}")
    status, printed = shell.paste(line)
    if status != 0:
        raise WalkthroughFailed(f"`{line}` exited with status {status}:\n{printed}")


def _expect(pattern: str, terminals: list[Terminal], marks: list[int], block: Block) -> None:
    if not terminals:
        raise WalkthroughFailed(f"README.md:{block.lineno}: expect {pattern!r}, but no terminal")
    deadline = time.monotonic() + EXPECT_TIMEOUT
    while not any(t.find(pattern, mark) for t, mark in zip(terminals, marks, strict=True)):
        for terminal in terminals:
            if terminal.process.poll() is not None:
                raise WalkthroughFailed(
                    f"`{terminal.command}` exited ({terminal.process.returncode}) before"
                    f" printing {pattern!r}:\n{terminal.tail()}"
                )
        if time.monotonic() > deadline:
            tails = "\n".join(t.tail() for t in terminals)
            raise WalkthroughFailed(
                f"README.md:{block.lineno}: no line matching {pattern!r} within"
                f" {EXPECT_TIMEOUT:.0f}s:\n{tails}"
            )
        time.sleep(0.1)
    print(f"  (seen: {pattern})")


def main() -> int:
    checkout = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent.parent)
    try:
        run(checkout.resolve())
    except WalkthroughFailed as failure:
        print(f"walkthrough failed: {failure}", file=sys.stderr)
        return 1
    print("walkthrough: every line did what the README says")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m playground.demo` as a newcomer runs it, in a process of its own: the fixture."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

READY = "Ctrl-C stops everything."
START_SECONDS = 25.0
STOP_SECONDS = 20.0


@dataclass
class Demo:
    """A running demo process and what it printed."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def output(self) -> str:
        """Return what it printed so far."""
        return "\n".join(self.lines)

    def read(self) -> None:
        """Collect its output until it closes (run in a thread)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> None:
        """Wait until a line contains `text`; fail with the output if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.process.poll() is not None:
                time.sleep(0.2)  # the reader thread may still hold the last lines
                if any(text in line for line in self.lines):
                    return
                pytest.fail(f"the demo exited with {self.process.returncode}:\n{self.output}")
            time.sleep(0.1)
        pytest.fail(f"the demo did not print {text!r} within {timeout} s:\n{self.output}")

    def shown(self, pattern: str) -> str:
        """Return the first group of a pattern in the output."""
        found = re.search(pattern, self.output)
        assert found, f"{pattern!r} not in:\n{self.output}"
        return found.group(1)

    def stop(self, sig: signal.Signals) -> int:
        """Send a signal and return the exit code; fail if it does not exit in time."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the demo did not stop on {sig.name}:\n{self.output}")


StartDemo = Callable[..., Demo]  # (env, *args) -> a demo that printed its banner


@pytest.fixture
def start_demo() -> Iterator[StartDemo]:
    """Start `python -m playground.demo` with some environment; kill it if a test left it."""
    demos: list[Demo] = []

    def start(env: dict[str, str], *args: str) -> Demo:
        process = subprocess.Popen(
            [sys.executable, "-m", "playground.demo", *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        demo = Demo(process)
        demo.reader = threading.Thread(target=demo.read, daemon=True)
        demo.reader.start()
        demos.append(demo)
        demo.wait_for(READY, START_SECONDS)
        return demo

    yield start
    for demo in demos:
        if demo.process.poll() is None:
            demo.process.kill()
            demo.process.wait()
        if demo.reader is not None:
            demo.reader.join(timeout=5)
        if demo.process.stdout is not None:
            demo.process.stdout.close()

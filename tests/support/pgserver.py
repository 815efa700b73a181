"""A PostgreSQL server of a test's own (it may stop and start it), and PgBouncer in front.

The shared test server (scripts/start-postgres.sh) must stay up for every other test;
a test that takes the database away under a running replica gets its own cluster
(initdb into a fresh folder, owned by the postgres user, on a free port).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.docker import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class PgServer:
    """One PostgreSQL cluster: its folder, its port, and pg_ctl to stop and start it."""

    folder: Path
    port: int

    @property
    def url(self) -> str:
        """The URL of its `postgres` database (trust auth on loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._ctl(
            "start",
            "-w",
            "-l",
            str(self.folder / "log"),
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
        )

    def stop(self) -> None:
        """Stop the server at once (fast shutdown: open connections are cut)."""
        self._ctl("stop", "-w", "-m", "fast")

    def _ctl(self, *args: str) -> None:
        done = subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.folder / "data"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            log = (
                (self.folder / "log").read_text(errors="replace")
                if (self.folder / "log").exists()
                else ""
            )
            raise RuntimeError(
                f"pg_ctl {args[0]} failed: {done.stdout}{done.stderr}\n{log[-2000:]}"
            )


@pytest.fixture
def pg_server() -> Iterator[PgServer]:
    """A started PostgreSQL cluster of this test's own, removed afterwards."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 is not installed: scripts/start-postgres.sh installs it", False)
    folder = Path(tempfile.mkdtemp(prefix="rollbot-pgserver-"))
    shutil.chown(folder, "postgres")
    init = subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(PG_BIN / "initdb"),
            "-D",
            str(folder / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=folder,
    )
    if init.returncode != 0:
        pytest.fail(f"initdb failed: {init.stdout}{init.stderr}", False)
    server = PgServer(folder, free_port())
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        except RuntimeError:
            pass  # stopped by the test already
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pgbouncer(pg_dsn: str) -> Iterator[str]:
    """A real PgBouncer in transaction mode in front of the test server; yields its URL base."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.fail("pgbouncer is not installed: scripts/test.sh installs it", pytrace=False)
    server = urlsplit(pg_dsn)
    port = free_port()
    # PgBouncer refuses to run as root and drops to postgres, who cannot read pytest's
    # private tmp_path: its files live in a folder of their own.
    folder = Path(tempfile.mkdtemp(prefix="rollbot-pgbouncer-"))
    shutil.chown(folder, "postgres")
    (folder / "users.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.hostname} port={server.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {folder / 'users.txt'}\n"
        # Two server connections for many clients: transactions hop between them.
        "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 100\n"
        f"logfile = {folder / 'pgbouncer.log'}\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        shutil.chown(folder / name, "postgres")
    process = subprocess.Popen(
        [binary, "-u", "postgres", str(folder / "pgbouncer.ini")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(50):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None:
                    said = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"pgbouncer exited at start: {said}", pytrace=False)
                time.sleep(0.1)
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        process.terminate()
        process.communicate(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)

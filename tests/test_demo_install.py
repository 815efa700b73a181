"""`make install-demo` (what `make demo` installs) on a machine without the virtualenv."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPO = Path(__file__).parents[1]
TEST_ONLY = {"pytest", "pytest-asyncio", "pytest-timeout", "hypothesis", "mypy", "ruff", "moto"}
TEST_ONLY |= {"playwright"}
# Every playground module imported, as the demo and its simulated platforms import them.
IMPORT_PLAYGROUND = (
    "import importlib, pkgutil, playground\n"
    "for m in pkgutil.iter_modules(playground.__path__):\n"
    "    importlib.import_module('playground.' + m.name)\n"
)


def make_install_demo(venv: Path) -> str:
    """Run `make install-demo` into `venv` and return what it printed."""
    done = subprocess.run(
        ["make", "--no-print-directory", "install-demo", f"VENV={venv}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_demo_installs_what_it_needs_and_nothing_test_only(tmp_path: Path) -> None:
    venv = tmp_path / "venv"

    said = make_install_demo(venv)

    assert "installing rollbot and the playground's libraries" in said
    listed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert installed & TEST_ONLY == set()
    assert {"rollbot", "slack-bolt", "graphql-core", "jsonpatch"} <= installed
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", IMPORT_PLAYGROUND],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    # A second run finds the install current and installs nothing.
    assert "installing" not in make_install_demo(venv)

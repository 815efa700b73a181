"""Helm releases with a revision history on the test cluster, made with the real helm CLI.

`release(...)` packages a tiny chart (one Deployment whose image comes from the values)
once per version, with its own chart version and `appVersion`, installs the first and
upgrades to each next one with `--wait`, so helm records one revision per version. The
fake kubelet never readies an image containing `unpullable` or `crashloop`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from providers.helm import HelmProvider, HelmSettings
from tests.support.kube import Helm
from tests.support.waiting import wait_for

IMAGE = "registry.example/web"
CHART = """\
apiVersion: v2
name: tiny
version: 0.1.0
appVersion: "0.0.0"
"""
VALUES = """\
image:
  repository: registry.example/web
  tag: v1
replicaCount: 2
"""
TEMPLATE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels: {app: "{{ .Release.Name }}"}
  template:
    metadata:
      labels: {app: "{{ .Release.Name }}"}
    spec:
      containers:
      - name: web
        image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
"""


@dataclass(frozen=True)
class Step:
    """One version of the release: its chart version, app version and `--set` values."""

    chart_version: str
    app_version: str
    sets: tuple[str, ...] = ()
    wait: bool = True


def step(n: int, app_version: str, tag: str, *sets: str, wait: bool = True) -> Step:
    """Version n of the chart (0.n.0) with its app version and image tag."""
    return Step(f"0.{n}.0", app_version, (f"image.tag={tag}", *sets), wait)


async def package(helm: Helm, where: Path, chart_version: str, app_version: str) -> str:
    """Package the tiny chart at a version with an app version; return the .tgz path."""
    chart = where / "tiny"
    if not chart.exists():
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text(CHART)
        (chart / "values.yaml").write_text(VALUES)
        (chart / "templates" / "app.yaml").write_text(TEMPLATE)
    out = where / "packages" / app_version
    await helm(
        "package",
        str(chart),
        "--version",
        chart_version,
        "--app-version",
        app_version,
        "--destination",
        str(out),
    )
    return str(out / f"tiny-{chart_version}.tgz")


async def release(
    helm: Helm, where: Path, namespace: str, name: str, steps: list[Step]
) -> list[str]:
    """Install the first step and upgrade to each next one; return the packages."""
    packages = []
    for i, s in enumerate(steps):
        chart = await package(helm, where, s.chart_version, s.app_version)
        packages.append(chart)
        sets = [arg for value in s.sets for arg in ("--set", value)]
        wait = ["--wait=watcher", "--timeout", "60s"] if s.wait else []
        verb = "install" if i == 0 else "upgrade"
        await helm(verb, name, chart, "--namespace", namespace, *sets, *wait)
    return packages


async def history(helm: Helm, namespace: str, name: str) -> list[dict[str, Any]]:
    """`helm history -o json` of a release, oldest first."""
    found = await helm("history", name, "--namespace", namespace, "--output", "json")
    rows: list[dict[str, Any]] = json.loads(found.stdout)
    return rows


async def deployment_image(api: client.ApiClient, namespace: str, name: str) -> str:
    """The image of the release's Deployment's one container."""
    d = await client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    return str(d.spec.template.spec.containers[0].image)


async def kill_midway(
    helm_binary: str, kubeconfig: str, home: Path, namespace: str, name: str, chart: str
) -> None:
    """Start an upgrade that waits on pods that never get ready, and SIGKILL it midway.

    SIGKILL, not SIGTERM: helm answers SIGTERM by marking the release failed. Killed, it
    leaves the newest revision `pending-upgrade`, as a CI job killed mid-deploy does.
    """
    process = await asyncio.create_subprocess_exec(
        helm_binary,
        "upgrade",
        name,
        chart,
        "--namespace",
        namespace,
        f"--kubeconfig={kubeconfig}",
        "--set",
        "image.tag=crashloop",
        "--set",
        "image.repository=registry.example/crashloop",
        "--wait=watcher",
        "--timeout",
        "120s",
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )

    async def pending() -> bool | None:
        run = await asyncio.create_subprocess_exec(
            helm_binary,
            "history",
            name,
            "--namespace",
            namespace,
            f"--kubeconfig={kubeconfig}",
            "--output",
            "json",
            env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await run.communicate()
        rows = json.loads(out or b"[]")
        return True if rows and rows[-1]["status"] == "pending-upgrade" else None

    try:
        await wait_for(pending, "the upgrade to be pending", timeout=60)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()


HelmProviderFactory = Callable[..., HelmProvider]


@pytest.fixture
async def helm_provider(
    kubeconfig: str, helm_binary: str, kube_namespace: str
) -> AsyncIterator[HelmProviderFactory]:
    """Factory of helm providers for release `shop` in the test namespace."""
    made: list[HelmProvider] = []

    def make(**settings: Any) -> HelmProvider:
        values = {
            "provider": "helm",
            "release": "shop",
            "namespace": kube_namespace,
            "kubeconfig": kubeconfig,
            "helm_binary": helm_binary,
            "timeout_seconds": 60,
            **settings,
        }
        provider = HelmProvider(HelmSettings.model_validate(values))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


HANGING_HELM = """\
#!{python}
# Stand-in for a helm whose rollback never returns, as helm does when the API server
# holds a request and never answers (client-go sets no deadline on it), and which
# ignores SIGTERM, as a process stuck in a system call can. Every other command runs
# the real helm.
import os
import signal
import sys
import time

if sys.argv[1:2] == ["rollback"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)
os.execv({helm!r}, [{helm!r}, *sys.argv[1:]])
"""


def hanging_helm(folder: Path, helm_binary: str) -> str:
    """Write the hanging stand-in (see HANGING_HELM) into `folder`; return its path."""
    path = folder / "hanging-helm"
    path.write_text(HANGING_HELM.format(python=sys.executable, helm=helm_binary))
    path.chmod(0o755)
    return str(path)

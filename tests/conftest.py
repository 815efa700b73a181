"""Shared fixtures: a clean environment for every test, and the service fixtures."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.support.docker",
    "tests.support.swarm",
    "tests.support.services",
    "tests.support.slack",
    "tests.support.bot",
    "tests.support.aws",
    "tests.support.railway",
    "tests.support.vercel",
    "tests.support.migrations",
    "tests.support.stores",
    "tests.support.pgserver",
    "tests.support.replicas",
    "tests.support.gitrepos",
    "tests.support.playground",
    "tests.support.browser",
    "tests.support.demo",
    "tests.support.redis_cluster",
    "tests.support.kube",
    "tests.support.kube_workloads",
    "tests.support.helm_releases",
    "tests.support.prometheus",
    "tests.support.otlp",
]

# Variables the test command sets to reach the services it started; everything else
# that rollbot reads is cleared so no test depends on the developer's shell.
KEPT = {"PATH", "HOME", "LANG", "DOCKER_HOST", "TMPDIR"}
KEPT_PREFIXES = ("ROLLBOT_TEST_", "PYTEST_", "SSL_", "REQUESTS_CA", "CURL_CA")
SECRET_PREFIXES = (
    "SLACK_",
    "ROLLBOT_",
    "DATABASE_URL",
    "REDIS_URL",
    "AWS_",
    "RAILWAY_",
    "VERCEL_",
    "GITHUB_",
    "OTEL_",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove rollbot's and Slack's variables from the environment of each test."""
    for name in list(os.environ):
        if name in KEPT or name.startswith(KEPT_PREFIXES):
            continue
        if name.startswith(SECRET_PREFIXES):
            monkeypatch.delenv(name)

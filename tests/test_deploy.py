"""The deployment artifacts: the image, compose.yaml, the Helm chart and its plain manifests."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bot.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
CHART = ROOT / "deploy" / "helm" / "rollbot"
MANIFESTS = ROOT / "deploy" / "kubernetes" / "rollbot.yaml"
CONFIG = ROOT / "deploy" / "rollbot.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "rollbot.env.example"
REPLICAS = ("rollbot-a", "rollbot-b")

# Names whose values are secrets: they may only be referenced, never written down.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|ROLLBOT_STORE|DATABASE_URL|REDIS_URL")
TOKEN_SHAPES = re.compile(
    r"xox[abeoprs]-[A-Za-z0-9-]{8,}|xapp-[A-Za-z0-9-]{8,}|gh[pousr]_[A-Za-z0-9]{16,}"
    r"|github_pat_[A-Za-z0-9_]{16,}|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
)
URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@]+:([^\s@]+)@")


def dockerfile_stage() -> list[tuple[str, str]]:
    """Return the instructions of the Dockerfile's final stage, continuations joined."""
    lines = [
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = "\n".join(lines).replace("\\\n", " ")
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_env() -> dict[str, str]:
    """Return the variables the final stage's ENV instructions set."""
    pairs = (
        word.split("=", 1)
        for keyword, rest in dockerfile_stage()
        if keyword == "ENV"
        for word in shlex.split(rest)
    )
    return dict(pairs)


def compose() -> dict[str, Any]:
    """Return compose.yaml parsed, anchors resolved."""
    return yaml.safe_load(COMPOSE.read_text())


def compose_file(value: str) -> Path:
    """Resolve a compose file path, taking the default of a `${VAR:-default}` reference."""
    if match := re.fullmatch(r"\$\{\w+:-(.+)\}", value):
        value = match[1]
    return ROOT / value


def manifests() -> dict[str, dict[str, Any]]:
    """Return the plain Kubernetes manifests by kind (one of each)."""
    docs = [doc for doc in yaml.safe_load_all(MANIFESTS.read_text()) if doc]
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs), "one object of each kind"
    return by_kind


def chart_values() -> dict[str, Any]:
    """Return the chart's default values."""
    return yaml.safe_load((CHART / "values.yaml").read_text())


def pod_spec() -> dict[str, Any]:
    """Return the pod spec of the Deployment."""
    return manifests()["Deployment"]["spec"]["template"]["spec"]


def deploy_files() -> list[Path]:
    """Return every file this repository deploys with."""
    files = [DOCKERFILE, COMPOSE, ROOT / ".dockerignore"]
    return files + sorted(p for p in (ROOT / "deploy").rglob("*") if p.is_file())


# -- the image ----------------------------------------------------------------------------


def test_image_runs_as_a_numeric_unprivileged_user() -> None:
    users = [rest for keyword, rest in dockerfile_stage() if keyword == "USER"]
    assert users, "the final stage must set USER"
    user, _, group = users[-1].partition(":")
    # Numeric, or Kubernetes' runAsNonRoot cannot verify it.
    assert user.isdigit() and int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)


def test_image_serves_http_on_port_from_env_default_3000() -> None:
    stage = dict(dockerfile_stage())
    argv = json.loads(stage.get("ENTRYPOINT", "[]")) + json.loads(stage["CMD"])
    command = " ".join(argv)
    assert "rollbot serve --http --port" in command
    assert '"${PORT:-3000}"' in command
    assert dockerfile_env()["PORT"] == "3000"
    assert stage["EXPOSE"] == "3000"


def test_image_healthcheck_asks_healthz_with_python_alone() -> None:
    check = dict(dockerfile_stage())["HEALTHCHECK"]
    command = check.split(" CMD ", 1)[1]
    assert command.startswith("python -c ")
    assert "urllib.request" in command and "/healthz" in command
    assert not re.search(r"\b(curl|wget)\b", command)


def test_image_installs_runtime_dependencies_only() -> None:
    text = DOCKERFILE.read_text()
    installs = re.findall(r"pip install[^\n]*", text)
    assert installs
    assert not any("[" in line for line in installs), "no extras ([test]) in the image"
    # The dependency list is read from pyproject.toml, so the two cannot drift apart; the
    # tracing extra comes along (off until OTEL_EXPORTER_OTLP_ENDPOINT is set), tests never.
    assert "p['dependencies'] + p['optional-dependencies']['otel']" in text
    assert "['test']" not in text
    assert (
        "test"
        in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )


def test_image_has_the_programs_providers_run() -> None:
    installed = " ".join(rest for keyword, rest in dockerfile_stage() if keyword == "RUN")
    packages = set(re.findall(r"[a-z][a-z0-9.+-]+", installed.split("apt-get install", 1)[1]))
    # The git provider runs git (ssh for ssh remotes); postgres_migrations runs pg_dump
    # and pg_restore.
    assert {"git", "openssh-client", "postgresql-client"} <= packages
    sources = " ".join(p.read_text() for p in (ROOT / "providers").rglob("*.py"))
    for name in ("git", "pg_dump", "pg_restore"):
        assert f'"{name}"' in sources, f"no provider runs {name} any more: drop it from the image"


def test_the_package_carries_the_templates_and_the_migrations(tmp_path: Path) -> None:
    # The image installs the package: what the bot reads at run time must be in it.
    # setuptools' build_py lays the package out as a wheel would (package data included).
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "import setuptools; setuptools.setup()",
            "-q",
            "build_py",
            "--build-lib",
            str(tmp_path / "lib"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    lib = tmp_path / "lib" / "bot"
    for template in (ROOT / "bot" / "templates").glob("*.j2"):
        assert (lib / "templates" / template.name).read_text() == template.read_text()
    assert (lib / "store" / "pg_migrations" / "0001_schema.sql").exists()
    assert "cp -r templates" not in DOCKERFILE.read_text()


def test_build_context_leaves_out_secrets_and_local_state() -> None:
    ignored = set(
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert {".env", ".git", ".venv", "artifacts", "rollbot-data", "tests"} <= ignored
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


# -- compose ------------------------------------------------------------------------------


def test_compose_runs_two_replicas_of_the_image_on_one_postgresql() -> None:
    services = compose()["services"]
    built = sorted(name for name, s in services.items() if s.get("build") in (".", "./"))
    assert built == list(REPLICAS)
    db_host = None
    for name in REPLICAS:
        store = urlsplit(services[name]["environment"]["ROLLBOT_STORE"])
        assert store.scheme == "postgresql", name
        assert store.password and store.password.startswith("${"), "password from .env"
        db_host = db_host or store.hostname
        assert store.hostname == db_host, "both replicas on one database"
        assert services[name]["depends_on"][db_host]["condition"] == "service_healthy"
    db = services[db_host]
    assert db["image"].startswith("postgres:15")
    assert "pg_isready" in db["healthcheck"]["test"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])


def test_compose_publishes_one_port_that_balances_over_both_replicas() -> None:
    spec = compose()
    published = {name: s["ports"] for name, s in spec["services"].items() if s.get("ports")}
    assert len(published) == 1
    [(balancer, ports)] = published.items()
    assert len(ports) == 1
    inside = int(str(ports[0]).rsplit(":", 1)[1])
    [mount] = spec["services"][balancer]["configs"]
    cfg = compose_file(spec["configs"][mount["source"]]["file"]).read_text()
    assert re.search(rf"^\s*bind :{inside}$", cfg, re.M)
    assert re.search(r"^\s*balance roundrobin$", cfg, re.M)
    assert re.search(r"^\s*option httpchk GET /readyz$", cfg, re.M)
    servers = re.findall(r"^\s*server \S+ (\S+)", cfg, re.M)
    assert sorted(servers) == [f"{name}:{dockerfile_env()['PORT']}" for name in REPLICAS]


def test_compose_secrets_come_from_the_env_file() -> None:
    spec = compose()
    for name, service in spec["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key) and key != "ROLLBOT_STORE":
                assert str(value).startswith("${"), f"{name}.{key} must come from .env"
    for name in REPLICAS:
        assert spec["services"][name]["env_file"] == ".env"
    assigned = [
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "POSTGRES_PASSWORD"} <= {
        k for k, _ in assigned
    }
    assert all(value == "" for _, value in assigned), "the example holds no values"


def test_compose_replicas_run_read_only_with_the_shipped_config() -> None:
    spec = compose()
    for name in REPLICAS:
        service = spec["services"][name]
        assert service["read_only"] is True
        assert "/tmp" in service["tmpfs"]
        [mount] = service["configs"]
        assert mount["target"] == dockerfile_env()["ROLLBOT_CONFIG"]
        assert compose_file(spec["configs"][mount["source"]]["file"]) == CONFIG


# -- Kubernetes ---------------------------------------------------------------------------


def test_the_shipped_config_loads_and_the_chart_carries_the_same() -> None:
    load_config(CONFIG, check_secrets=True)
    assert chart_values()["config"] == yaml.safe_load(CONFIG.read_text())
    configmap = manifests()["ConfigMap"]
    assert yaml.safe_load(configmap["data"]["rollbot.yaml"]) == yaml.safe_load(CONFIG.read_text())


def test_kubernetes_runs_two_replicas_ready_on_readyz() -> None:
    deployment = manifests()["Deployment"]
    assert deployment["spec"]["replicas"] == chart_values()["replicaCount"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    [container] = pod_spec()["containers"]
    assert " ".join(container["args"]).startswith("rollbot serve --http --port 3000")
    [port] = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 3000)
    # Ready while the store answers and Slack takes the token; alive while the process does.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_kubernetes_keeps_one_replica_through_disruptions_and_serves_both() -> None:
    objects = manifests()
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    pdb = objects["PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = objects["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_kubernetes_pods_run_non_root_on_a_read_only_root() -> None:
    spec = pod_spec()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    [container] = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"]: e.get("value") for e in container["env"]}
    config_dir = os.path.dirname(env["ROLLBOT_CONFIG"])
    assert (
        volumes[mounts[config_dir]]["configMap"]["name"]
        == manifests()["ConfigMap"]["metadata"]["name"]
    )


def test_kubernetes_takes_secrets_by_reference_only() -> None:
    assert "Secret" not in manifests()
    [container] = pod_spec()["containers"]
    [source] = container["envFrom"]
    assert source["secretRef"]["name"] == chart_values()["existingSecret"]
    for entry in container["env"]:
        if SECRET_NAME.search(entry["name"]):
            assert "value" not in entry, entry["name"]
    assert not any(SECRET_NAME.search(name) for name in chart_values()["env"])
    templates = " ".join(p.read_text() for p in (CHART / "templates").iterdir())
    assert "kind: Secret" not in templates and "secretKeyRef" not in templates


def test_chart_describes_the_app_it_ships() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]


def test_no_deploy_file_holds_a_secret_value() -> None:
    for path in deploy_files():
        text = path.read_text()
        assert not TOKEN_SHAPES.search(text), path
        for password in URL_PASSWORD.findall(text):
            # A reference to .env, or a placeholder such as PASSWORD.
            assert password.startswith("${") or password.isupper(), (path, password)

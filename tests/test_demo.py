"""`python -m playground.demo` as a newcomer runs it: the banner, the page, and a clean stop."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

import aiodocker
import httpx
import yaml

from tests.support.demo import StartDemo
from tests.support.docker import free_port
from tests.support.waiting import wait_for


def descendants(pid: int) -> set[int]:
    """Return the processes started by `pid`, and theirs, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces and parentheses: the fields follow the last ')'.
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Return True while a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def get(url: str, **kwargs: Any) -> httpx.Response:
    """GET with a short timeout."""
    return httpx.get(url, timeout=5.0, **kwargs)


def refused(url: str) -> bool:
    """Return True when nothing listens at `url` any more."""
    try:
        httpx.get(url, timeout=2.0)
    except httpx.TransportError:
        return True
    return False


def unknown_method(slack_api: str) -> dict[str, Any]:
    """Call a Web API method Slack does not have, as any client with a bot token could."""
    headers = {"Authorization": "Bearer xoxb-any"}
    answer = httpx.post(f"{slack_api}no.such.method", headers=headers, timeout=5.0)
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


async def project_containers(docker_host: str, project: str) -> list[dict[str, Any]]:
    """Return every container (running or not) of a compose project."""
    async with aiodocker.Docker(url=docker_host) as docker:
        found = await docker.containers.list(
            all=True, filters={"label": [f"com.docker.compose.project={project}"]}
        )
        return [await container.show() for container in found]


async def test_demo_runs_a_real_backend_and_ctrl_c_removes_everything(
    start_demo: StartDemo, docker_host: str, tmp_path: Path
) -> None:
    port = free_port()
    demo = start_demo({"DOCKER_HOST": docker_host, "TMPDIR": str(tmp_path)}, "--port", str(port))

    page = demo.shown(r"open (http://127\.0\.0\.1:\d+)")
    assert page == f"http://127.0.0.1:{port}"
    assert "/rollback backend v1.2.3" in demo.output
    assert "Ben (approver)" in demo.output
    assert f"backend: real, a container on the Docker engine at {docker_host}" in demo.output
    assert re.search(r"frontend\s+simulated: fake Vercel API", demo.output)
    assert re.search(r"worker\s+simulated: fake Railway API", demo.output)
    assert re.search(r"release\s+real: git repository", demo.output)
    assert re.search(
        r"web\s+simulated: Kubernetes Deployment shop/web, simulated API on 127\.0\.0\.1:\d+",
        demo.output,
    )
    assert "/rollback web v2.3.1" in demo.output
    data = Path(demo.shown(r"Data folder: (\S+) \(removed at exit\)"))
    assert data.parent == tmp_path
    bot = demo.shown(r"Bot: (http://127\.0\.0\.1:\d+),")
    log = Path(demo.shown(r"log: (\S+)"))
    slack_api = demo.shown(r"Fake Slack Web API: (\S+)")
    project = demo.shown(r"Docker container (rollbot-demo-[0-9a-f]+)-backend-1")

    response = get(page)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert get(f"{bot}/healthz").status_code == 200
    assert unknown_method(slack_api) == {"ok": False, "error": "unknown_method"}
    assert log.parent == data and '"event": "serving http"' in log.read_text()

    # The config the bot runs names the container, and its health check reaches it.
    config = yaml.safe_load((data / "rollbot.yaml").read_text())
    backend = config["services"]["backend"]["environments"]["production"]
    assert backend["provider"]["provider"] == "docker_compose"
    assert backend["provider"]["project"] == project
    assert '"version":"v1.2.4"' in get(backend["checks"][0]["url"]).text
    assert config["approval"]["approvers"] == {"users": ["U_BEN"]}
    assert config["approval"]["requesters"] == {"users": ["U_ANA", "U_BEN"]}
    assert config["runtime"]["freeze_watch_seconds"] == 5
    (running,) = await project_containers(docker_host, project)
    assert running["Config"]["Image"] == "rollbot-demo/backend:v1.2.4"
    assert running["State"]["Running"]

    children = descendants(demo.process.pid)
    assert children, "the bot runs as a child process"
    assert demo.stop(signal.SIGINT) == 0
    assert "Stopped." in demo.output

    assert not [pid for pid in children if alive(pid)]
    assert refused(page) and refused(f"{bot}/healthz") and refused(slack_api)
    assert await project_containers(docker_host, project) == []
    assert not data.exists()


async def test_without_docker_the_backend_is_simulated(
    start_demo: StartDemo, tmp_path: Path
) -> None:
    port = free_port()
    data = tmp_path / "kept"
    missing = f"unix://{tmp_path}/no-docker.sock"
    demo = start_demo({"DOCKER_HOST": missing}, "--port", str(port), "--data", str(data))

    because = f"because no Docker engine answers at {missing}"
    assert f"backend: simulated on the fake Vercel API, {because}" in demo.output
    assert re.search(r"backend\s+simulated: fake Vercel API on 127\.0\.0\.1:\d+", demo.output)
    assert f"Data folder: {data} (kept at exit)" in demo.output
    assert get(f"http://127.0.0.1:{port}").status_code == 200
    # The page says so too: the facts come from what the demo found, not from its wishes.
    about = get(f"http://127.0.0.1:{port}/api/config").json()["about"]
    assert [service["service"] for service in about["real"]] == ["release"]
    assert [s["service"] for s in about["simulated"]] == ["backend", "frontend", "worker", "web"]
    assert f"backend: simulated on the fake Vercel API, {because}" in about["remarks"]

    config = yaml.safe_load((data / "rollbot.yaml").read_text())
    backend = config["services"]["backend"]
    assert "simulated" in backend["description"]
    production = backend["environments"]["production"]
    assert production["provider"]["provider"] == "vercel"
    assert '"version":"v1.2.4"' in get(production["checks"][0]["url"]).text
    web = config["services"]["web"]["environments"]["production"]
    assert web["provider"]["provider"] == "kubernetes"
    assert Path(web["provider"]["kubeconfig"]) == data / "kubeconfig"
    assert '"version":"v2.4.0"' in get(web["checks"][0]["url"]).text

    # The worker runs on the fake Railway: its card says the version typed, the id beside.
    page = f"http://127.0.0.1:{port}"
    channel = get(f"{page}/api/config").json()["channel"]
    asked = {"user": "U_ANA", "channel": channel, "text": "/rollback worker v1.2.3"}
    assert httpx.post(f"{page}/api/command", json=asked, timeout=15.0).status_code == 200

    async def shown() -> str | None:
        seen = get(f"{page}/api/state", params={"user": "U_ANA", "channel": channel}).text
        return seen if "v1.2.3 (deployment " in seen else None

    card = await wait_for(shown, "the worker's card in the playground", 30)
    assert "Running now" in card and "v1.2.4 (deployment " in card

    children = descendants(demo.process.pid)
    assert demo.stop(signal.SIGTERM) == 0
    assert not [pid for pid in children if alive(pid)]
    # --data keeps the folder: the store and the bot's log, which holds no token.
    assert (data / "rollbot.db").exists()
    log = (data / "rollbot.log").read_text()
    assert '"event": "serving http"' in log
    assert "xoxb-" not in log

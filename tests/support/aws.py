"""AWS for tests: moto in server mode over real HTTP, and factories of ECS and ALB setups.

moto's server is a thread of the test process, so it reads `MOTO_ECS_SERVICE_RUNNING`
and `MOTO_ECS_SERVICE_FAILED_TASKS` from this process's environment, and only when a
service is created: the `ecs_service` factory sets them for the service it creates.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import boto3
import pytest
from moto.server import ThreadedMotoServer
from pydantic import TypeAdapter

from providers import ProviderSettings, build_provider
from providers.base import Provider
from tests.support.aws_standin import AwsStandIn

REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": REGION,
}
TAGS = ("v1.2.2", "v1.2.3", "v1.2.4")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """Start moto's server on 127.0.0.1 for the session and return its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Test credentials, set in this process (for providers built here) and returned for
    `start_rollbot(config, extra_env=aws_env)`."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return dict(CREDENTIALS)


class AwsTarget(Protocol):
    """Something on moto a provider can be configured for."""

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The provider settings, as in the YAML config."""
        ...


ProviderFactory = Callable[..., Provider]


@pytest.fixture
async def aws_provider(aws_env: dict[str, str]) -> AsyncIterator[ProviderFactory]:
    """Build a target's provider through the registry, settings overridden by keyword;
    close them all after the test."""
    made: list[Provider] = []
    adapter: TypeAdapter[Any] = TypeAdapter(ProviderSettings)

    def make(target: AwsTarget, **overrides: Any) -> Provider:
        provider = build_provider(adapter.validate_python(target.settings(**overrides)))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def aws_client(service: str, endpoint_url: str) -> Any:
    """A boto3 client on moto with explicit test credentials (the environment is cleared)."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def ecs_client(moto_server: str) -> Iterator[Any]:
    """An ECS client on moto, for setting up and reading back."""
    client = aws_client("ecs", moto_server)
    yield client
    client.close()


@pytest.fixture
def ecr_client(moto_server: str) -> Iterator[Any]:
    """An ECR client on moto, for making repositories and pushing image manifests."""
    client = aws_client("ecr", moto_server)
    yield client
    client.close()


def push_manifest(ecr_client: Any, repository: str, tag: str) -> str:
    """Put a minimal image manifest under `tag` in an ECR repository; return its digest."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": "sha256:" + uuid.uuid4().hex * 2,
        },
        "layers": [],
    }
    answer = ecr_client.put_image(
        repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag
    )
    return str(answer["image"]["imageId"]["imageDigest"])


@pytest.fixture
def elbv2_client(moto_server: str) -> Iterator[Any]:
    """An ELBv2 client on moto, for setting up and reading back."""
    client = aws_client("elbv2", moto_server)
    yield client
    client.close()


def unique(prefix: str) -> str:
    """A name no other test uses on the shared moto server (ALB names: 32 chars at most)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class EcsService:
    """A cluster, a family with one revision per tag and a service on the last one."""

    endpoint_url: str
    cluster: str
    service: str
    family: str
    container: str
    revisions: dict[str, int]

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The provider settings (as in the YAML config) that target this service."""
        return {
            "provider": "ecs",
            "cluster": self.cluster,
            "service": self.service,
            "family": self.family,
            "container": self.container,
            "region": REGION,
            "endpoint_url": self.endpoint_url,
            "poll_interval_seconds": 0.2,
            "stable_timeout_seconds": 10,
            **overrides,
        }


EcsServiceFactory = Callable[..., EcsService]


@pytest.fixture
def ecs_service(
    moto_server: str, ecs_client: Any, monkeypatch: pytest.MonkeyPatch
) -> EcsServiceFactory:
    """Make an ECS service on v1.2.4 with revisions v1.2.2..v1.2.4 (a sidecar first).

    `running` and `failed_tasks` set what moto reports for the service's deployment.
    """

    def make(
        tags: tuple[str, ...] = TAGS, *, desired: int = 2, running: int = 2, failed_tasks: int = 0
    ) -> EcsService:
        cluster, family = unique("cluster"), unique("backend")
        ecs_client.create_cluster(clusterName=cluster)
        revisions = {}
        for tag in tags:
            answer = ecs_client.register_task_definition(
                family=family,
                containerDefinitions=[
                    # Not the configured container: its image must not name versions.
                    {"name": "envoy", "image": "envoyproxy/envoy:v1.30.1", "memory": 64},
                    {"name": "app", "image": f"registry:5000/pmcrm/backend:{tag}", "memory": 128},
                ],
            )
            revisions[tag] = answer["taskDefinition"]["revision"]
        monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", str(running))
        monkeypatch.setenv("MOTO_ECS_SERVICE_FAILED_TASKS", str(failed_tasks))
        service = unique("svc")
        ecs_client.create_service(
            cluster=cluster,
            serviceName=service,
            taskDefinition=f"{family}:{revisions[tags[-1]]}",
            desiredCount=desired,
        )
        return EcsService(moto_server, cluster, service, family, "app", revisions)

    return make


def service_task_definition(ecs_client: Any, target: EcsService) -> str:
    """Return the task definition the service is set to, as moto reads it back."""
    answer = ecs_client.describe_services(cluster=target.cluster, services=[target.service])
    return str(answer["services"][0]["taskDefinition"])


def register_revision(
    ecs_client: Any, target: EcsService, tag: str, *, sidecar: bool = True, **task: Any
) -> int:
    """Register another revision of the family, the app container on `tag`; return its number.

    `app` (a dict) is merged into the app container's definition; other keywords
    (`cpu`, `memory`) go to register_task_definition.
    """
    app = {"name": "app", "image": f"registry:5000/pmcrm/backend:{tag}", "memory": 128}
    app.update(task.pop("app", {}))
    containers = [app]
    if sidecar:
        containers.insert(0, {"name": "envoy", "image": "envoyproxy/envoy:v1.30.1", "memory": 64})
    answer = ecs_client.register_task_definition(
        family=target.family, containerDefinitions=containers, **task
    )
    number = int(answer["taskDefinition"]["revision"])
    target.revisions[tag] = number
    return number


TRIPPED_AT = datetime(2025, 3, 4, 3, 12, tzinfo=UTC).timestamp()


def breaker_tripped(target: EcsService, *, good: int, bad: int, done: bool) -> Any:
    """An edit of describe_services: `bad` failed and ECS rolls (or rolled) back to `good`."""

    def edit(service: dict[str, Any]) -> None:
        if not service["taskDefinition"].endswith(f"{target.family}:{good}"):
            return  # someone deployed since: moto's own answer holds
        arn = f"arn:aws:ecs:us-east-1:123456789012:task-definition/{target.family}"
        rollback = {
            "id": "ecs-svc/2222",
            "status": "PRIMARY",
            "taskDefinition": f"{arn}:{good}",
            "desiredCount": 2,
            "runningCount": 2 if done else 1,
            "pendingCount": 0 if done else 1,
            "failedTasks": 0,
            "createdAt": TRIPPED_AT,
            "rolloutState": "COMPLETED" if done else "IN_PROGRESS",
            "rolloutStateReason": "ECS deployment ecs-svc/2222 completed."
            if done
            else "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1111.",
        }
        failed = {
            "id": "ecs-svc/3333",
            "status": "ACTIVE",
            "taskDefinition": f"{arn}:{bad}",
            "desiredCount": 0,
            "runningCount": 0,
            "pendingCount": 0,
            "failedTasks": 3,
            "createdAt": TRIPPED_AT - 300,
            "rolloutState": "FAILED",
            "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start.",
        }
        service["deployments"] = [rollback] if done else [rollback, failed]
        service["events"] = [
            {
                "id": "e2",
                "createdAt": TRIPPED_AT,
                "message": f"(service {target.service}) rolling back to deployment ecs-svc/1111.",
            },
            {
                "id": "e1",
                "createdAt": TRIPPED_AT,
                "message": f"(service {target.service}) (deployment ecs-svc/3333) deployment "
                "failed: tasks failed to start.",
            },
        ]

    return edit


@dataclass
class AlbListener:
    """An ALB listener forwarding to blue, with blue and green target groups."""

    endpoint_url: str
    listener_arn: str
    blue_arn: str
    green_arn: str

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The provider settings (as in the YAML config) that target this listener."""
        return {
            "provider": "ecs_blue_green",
            "listener_arn": self.listener_arn,
            "blue_target_group_arn": self.blue_arn,
            "green_target_group_arn": self.green_arn,
            "region": REGION,
            "endpoint_url": self.endpoint_url,
            "poll_interval_seconds": 0.1,
            "settle_timeout_seconds": 5,
            **overrides,
        }


AlbListenerFactory = Callable[..., AlbListener]


@pytest.fixture
def alb_listener(moto_server: str, elbv2_client: Any) -> Iterator[AlbListenerFactory]:
    """Make a VPC, an ALB, blue and green target groups and a listener forwarding to blue."""
    ec2 = aws_client("ec2", moto_server)

    def make(*, weighted: bool = False, green_targets: int = 1) -> AlbListener:
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)[
                "Subnet"
            ]["SubnetId"]
            for i, zone in enumerate((f"{REGION}a", f"{REGION}b"), start=1)
        ]
        balancer = elbv2_client.create_load_balancer(
            Name=unique("alb"), Subnets=subnets, Type="application"
        )["LoadBalancers"][0]["LoadBalancerArn"]
        groups = {}
        for colour, targets in (("blue", 1), ("green", green_targets)):
            arn = elbv2_client.create_target_group(
                Name=unique(colour), Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip"
            )["TargetGroups"][0]["TargetGroupArn"]
            if targets:
                elbv2_client.register_targets(
                    TargetGroupArn=arn,
                    Targets=[{"Id": f"10.0.1.{10 + i}", "Port": 8080} for i in range(targets)],
                )
            groups[colour] = arn
        forward: dict[str, Any] = {"Type": "forward", "TargetGroupArn": groups["blue"]}
        if weighted:
            forward = {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": groups["blue"], "Weight": 90},
                        {"TargetGroupArn": groups["green"], "Weight": 10},
                    ],
                    "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 300},
                },
            }
        listener = elbv2_client.create_listener(
            LoadBalancerArn=balancer, Protocol="HTTP", Port=80, DefaultActions=[forward]
        )["Listeners"][0]["ListenerArn"]
        return AlbListener(moto_server, listener, groups["blue"], groups["green"])

    yield make
    ec2.close()


def listener_actions(elbv2_client: Any, target: AlbListener) -> list[dict[str, Any]]:
    """Return the listener's default actions, as moto reads them back."""
    answer = elbv2_client.describe_listeners(ListenerArns=[target.listener_arn])
    actions: list[dict[str, Any]] = answer["Listeners"][0]["DefaultActions"]
    return actions


AwsEndpointFactory = Callable[..., Awaitable[AwsStandIn]]


@pytest.fixture
async def aws_endpoint(moto_server: str) -> AsyncIterator[AwsEndpointFactory]:
    """Factory of stand-in AWS endpoints in front of moto, all closed after the test.

    `aws_endpoint(error=(status, code, message))` answers every call with that error;
    `aws_endpoint(action="UpdateService", error=...)` only that action;
    `aws_endpoint(action="ModifyListener")` accepts that action and does nothing;
    `aws_endpoint()` passes everything on, for `inject`, `target_health`, `edit_services`.
    """
    made: list[AwsStandIn] = []

    async def make(
        *,
        action: str | None = None,
        error: tuple[int, str, str] | None = None,
        delay: float = 0.0,
        hang_seconds: float = 5.0,
    ) -> AwsStandIn:
        endpoint = AwsStandIn(moto_server, hang_seconds=hang_seconds)
        if error is not None:
            endpoint.fail(*error, action=action, delay=delay)
        elif action is not None:
            endpoint.swallow(action)
        made.append(endpoint)
        await endpoint.server.start_server()
        return endpoint

    yield make
    for endpoint in made:
        await endpoint.server.close()


@pytest.fixture
def lambda_client(moto_server: str) -> Iterator[Any]:
    """A Lambda client on moto, for setting up and reading back."""
    client = aws_client("lambda", moto_server)
    yield client
    client.close()


def function_zip(text: str) -> bytes:
    """A deployment package whose code says `text` (so each version's CodeSha256 differs)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", f"def handler(event, context):\n    return {text!r}\n")
    return buffer.getvalue()


@dataclass
class LambdaFunction:
    """A function with one published version per description and an alias on the last one."""

    endpoint_url: str
    function: str
    alias: str
    # Description -> version number, in publishing order.
    versions: dict[str, str]

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The provider settings (as in the YAML config) that target this alias."""
        return {
            "provider": "lambda_alias",
            "function": self.function,
            "alias": self.alias,
            "region": REGION,
            "endpoint_url": self.endpoint_url,
            **overrides,
        }


LambdaFunctionFactory = Callable[..., LambdaFunction]
ASSUME_LAMBDA = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


@pytest.fixture
def lambda_function(moto_server: str, lambda_client: Any) -> Iterator[LambdaFunctionFactory]:
    """Make a function with versions v1.2.2..v1.2.4 and alias `live` on the newest.

    `configs` maps a description to UpdateFunctionConfiguration keywords applied before
    that version is published; `weights` gives the alias additional version weights
    (`{"v1.2.3": 0.1}`), by description.
    """
    iam = aws_client("iam", moto_server)

    def make(
        descriptions: tuple[str, ...] = TAGS,
        *,
        configs: dict[str, dict[str, Any]] | None = None,
        alias_on: str | None = None,
        weights: dict[str, float] | None = None,
    ) -> LambdaFunction:
        role = iam.create_role(RoleName=unique("role"), AssumeRolePolicyDocument=ASSUME_LAMBDA)
        name = unique("checkout")
        lambda_client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role["Role"]["Arn"],
            Handler="index.handler",
            Code={"ZipFile": function_zip("first")},
            Environment={"Variables": {"DATABASE_URL": "postgres://app:hunter2@db/app"}},
        )
        versions = {}
        for description in descriptions:
            lambda_client.update_function_code(FunctionName=name, ZipFile=function_zip(description))
            if configs and description in configs:
                lambda_client.update_function_configuration(
                    FunctionName=name, **configs[description]
                )
            answer = lambda_client.publish_version(FunctionName=name, Description=description)
            versions[description] = str(answer["Version"])
        routing = {versions[d]: w for d, w in (weights or {}).items()}
        lambda_client.create_alias(
            FunctionName=name,
            Name="live",
            FunctionVersion=versions[alias_on or descriptions[-1]],
            RoutingConfig={"AdditionalVersionWeights": routing},
        )
        return LambdaFunction(moto_server, name, "live", versions)

    yield make
    iam.close()


def alias_now(lambda_client: Any, target: LambdaFunction) -> tuple[str, dict[str, float]]:
    """Return the alias's version and additional weights, as moto reads them back."""
    answer = lambda_client.get_alias(FunctionName=target.function, Name=target.alias)
    weights = (answer.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return str(answer["FunctionVersion"]), dict(weights)

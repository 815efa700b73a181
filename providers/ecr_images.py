"""Preflight check `image-present`: each image of the target task definition is in ECR.

ECS pulls a task's images when the task starts, so a rollback to a revision whose image
was deleted (an ECR lifecycle policy expiring old tags is the usual cause) only fails
later, task after task, with CannotPullContainerError. ECR's DescribeImages says it now.

An image in ECR (`<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>` or
`@sha256:…`) is looked up in its own account and region, and its digest shown; a missing
image or repository fails; an image ECR cannot be asked about (no permission, no answer)
warns. Images in other registries are not checked, and the check says so (warn).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from providers.aws import AwsApi, AwsSettings
from providers.base import AuthRejected, NotFound, ProviderError
from providers.capabilities import PreflightCheck, Verdict

NAME = "image-present"
_ECR = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class EcrImage:
    """An image reference that names an ECR repository."""

    account: str
    region: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, image: str) -> EcrImage | None:
        """Return the ECR parts of an image reference, or None for another registry."""
        match = _ECR.match(image)
        if match is None:
            return None
        tag = match["tag"] if match["tag"] or match["digest"] else "latest"
        return cls(match["account"], match["region"], match["repository"], tag, match["digest"])

    def image_id(self) -> dict[str, str]:
        """The imageIds entry DescribeImages takes: the digest when pinned, else the tag."""
        return {"imageDigest": self.digest} if self.digest else {"imageTag": str(self.tag)}


class EcrImages:
    """Asks ECR whether images exist, one client per region (an image names its own)."""

    def __init__(self, settings: AwsSettings) -> None:
        self._settings = settings
        self._apis: dict[str, AwsApi] = {}

    async def check(self, definition: dict[str, Any]) -> PreflightCheck:
        """Check every container image of a task definition; the worst verdict wins."""
        found: list[tuple[Verdict, str]] = []
        for container in definition.get("containerDefinitions") or []:
            name, image = str(container.get("name")), str(container.get("image") or "")
            found.append(await self._one(name, image))
        if not found:
            return PreflightCheck(NAME, Verdict.WARN, "The task definition names no image.")
        verdict = Verdict.worst(f[0] for f in found)
        return PreflightCheck(NAME, verdict, "; ".join(line for _, line in found) + ".")

    async def _one(self, name: str, image: str) -> tuple[Verdict, str]:
        ref = EcrImage.parse(image)
        if ref is None:
            return Verdict.WARN, f"{name}: {image} not checked (not in ECR)"
        try:
            answer = await self._api(ref.region).read(
                f"looking up {image} in ECR",
                lambda c: c.describe_images(
                    registryId=ref.account, repositoryName=ref.repository, imageIds=[ref.image_id()]
                ),
            )
        except NotFound:
            return Verdict.FAIL, f"{name}: {image} is not in ECR (deleted or expired?)"
        except AuthRejected:
            return Verdict.WARN, f"{name}: {image} not checked (no ecr:DescribeImages permission)"
        except ProviderError as exc:
            return Verdict.WARN, f"{name}: {image} not checked ({exc.message})"
        details = answer.get("imageDetails") or []
        digest = str(details[0].get("imageDigest") or "?") if details else "?"
        return Verdict.PASS, f"{name}: {image} is in ECR ({digest})"

    def _api(self, region: str) -> AwsApi:
        if region not in self._apis:
            settings = self._settings.model_copy(update={"region": region})
            self._apis[region] = AwsApi("ecr", settings)
        return self._apis[region]

    async def aclose(self) -> None:
        """Close the ECR clients."""
        for api in self._apis.values():
            await api.aclose()
        self._apis.clear()

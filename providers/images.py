"""Container image references, as Docker, ECS task definitions and Railway show them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageRef:
    """An image reference split into repository and tag."""

    repository: str
    tag: str

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        """Split `registry:5000/repo:tag` at the tag's colon (a port's colon is not one)."""
        name = ref.split("@", 1)[0]
        # The engine lists Docker Hub images by their short name.
        for prefix in ("docker.io/library/", "docker.io/"):
            if name.startswith(prefix):
                name = name.removeprefix(prefix)
                break
        repository, sep, tag = name.rpartition(":")
        if not sep or "/" in tag:
            return cls(name, "latest")
        return cls(repository, tag)

    def with_tag(self, tag: str) -> ImageRef:
        """Return the same repository with another tag."""
        return ImageRef(self.repository, tag)

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"

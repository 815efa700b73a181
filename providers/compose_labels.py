"""The labels of a compose container, and what a recreated one must carry to tell the truth.

How Compose v2 reads them (docker/compose `pkg/api/labels.go`, `pkg/compose/reconcile.go`
`mustRecreate`, `pkg/compose/build.go`, `pkg/compose/hash.go`):

- `docker compose ps` lists the containers labelled with the project and the service
  (one-offs apart) and shows each one's own image reference.
- `docker compose up -d` recreates a container when its `config-hash` differs from the
  hash of the service's config in the compose file (`ServiceHash`, which covers `image:`
  but not build, scale, replicas, depends_on or profiles), or when its `image` label
  differs from the image the file names: the local image ID since compose 2.2x.

A rolled-back container keeps every label of the container it replaces (project,
service, container number, oneoff, depends_on, config files, working dir, version and
config hash: the service config it was created from, image apart) and only its `image`
label changes, to the ID of the image it really runs. Then:

- `docker compose ps` shows it as the service's container, on the rolled-back image;
- a later `up -d` while the file still names the bad tag sees an image that is not the
  file's and recreates the container on the file's image: the rollback is undone, in the
  open (the thread says so and how to pin);
- a later `up -d` once the file names the rolled-back tag sees a config hash computed
  for the old image name and recreates the container once more, on the same image.

Keeping the old `image` label instead would hide the rollback: `up -d` with the file still
on the bad tag would find nothing to do, and the running version would differ from the
file without any sign of it.
"""

from __future__ import annotations

from collections.abc import Mapping

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
CONFIG_HASH_LABEL = "com.docker.compose.config-hash"
IMAGE_LABEL = "com.docker.compose.image"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
ENVIRONMENT_FILE_LABEL = "com.docker.compose.project.environment_file"


def recreated_labels(old: Mapping[str, str], target_image_id: str) -> dict[str, str]:
    """Return the labels of a container that replaces one with `old` labels on another image."""
    return {**old, IMAGE_LABEL: target_image_id}


def config_files(labels: Mapping[str, str]) -> list[str]:
    """Return the compose files the project was started from, as compose recorded them."""
    return [f for f in (labels.get(CONFIG_FILES_LABEL) or "").split(",") if f]

# rollbot: `rollbot serve --http` on $PORT (default 3000), as an unprivileged user.
#   docker build -t rollbot .
# Runtime dependencies (and tracing's) only: the `test` extra never goes into the image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/rollbot
WORKDIR /src
# Dependencies first, read from pyproject.toml, so a code change does not reinstall them;
# with the `otel` extra, so that setting OTEL_EXPORTER_OTLP_ENDPOINT is all tracing needs.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['otel']))" > requirements.txt \
    && /opt/rollbot/bin/pip install -r requirements.txt
COPY README.md ./
COPY bot/ bot/
COPY handlers/ handlers/
COPY providers/ providers/
COPY playground/ playground/
# pip and setuptools are for building only: they stay out of the image.
RUN /opt/rollbot/bin/pip install --no-deps . \
    && /opt/rollbot/bin/python -m pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="rollbot" \
      org.opencontainers.image.description="A ChatOps Slack bot for safe, audited deployment rollbacks" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# What the providers run as programs (everything else they reach over HTTP or a socket):
# - git, openssh-client: the git provider clones, reverts and pushes with git (https or ssh).
# - postgresql-client: postgres_migrations backs up with pg_dump and restores with
#   pg_restore. Debian 12 ships 15; pg_dump refuses a newer server, so for PostgreSQL 16+
#   install that major's client from apt.postgresql.org, or point `pg_bin_dir` at one.
# - tini: PID 1 that forwards signals and reaps what git's ssh leaves behind.
# The docker_compose provider speaks the Docker API over its socket: no docker CLI needed.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates git openssh-client postgresql-client tini \
    && rm -rf /var/lib/apt/lists/*
# A numeric user, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 rollbot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/rollbot \
        --shell /usr/sbin/nologin rollbot \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/rollbot /var/lib/rollbot/backups \
    && install -d -m 0755 /etc/rollbot
COPY --from=build /opt/rollbot /opt/rollbot
# MPLCONFIGDIR: matplotlib (monitoring charts) keeps its font cache there; the root
# filesystem may be read-only, and /tmp is writable in every way this image is run.
ENV PATH=/opt/rollbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    PORT=3000 \
    ROLLBOT_CONFIG=/etc/rollbot/rollbot.yaml \
    ROLLBOT_STORE=sqlite:////var/lib/rollbot/rollbot.db
WORKDIR /var/lib/rollbot
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT:-3000}/healthz', timeout=4)"
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["sh", "-c", "exec rollbot serve --http --port \"${PORT:-3000}\""]

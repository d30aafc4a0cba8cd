# syntax=docker/dockerfile:1.7
# One image for every CityWok process: `citywok serve` (matcher), `citywok fetch` (fetcher, init
# container or sidecar), `citywok operator`, and the offline commands (ingest, pack, push, ...).
#
# No ffmpeg binary and no system FFmpeg: PyAV's wheel (the `av` package) ships FFmpeg's libraries,
# and decoding happens in-process (a subprocess per request would cost ~100 ms of start-up).
# The other native parts (numpy, lmdb, zstandard, xxhash) also come as self-contained wheels, so the
# runtime stage needs nothing from apt.
#
# Runs as uid/gid 10001 (what the operator's pods and the chart set in their securityContext) and
# works with a read-only root filesystem: the only writable paths are the /data and /tmp volumes.
#
#   docker build -t citywok .
#   docker run --read-only -p 8000:8000 -v citywok-data:/data citywok serve
#
# Pin the base by digest for reproducible builds: --build-arg PYTHON_IMAGE=python:3.11-slim-trixie@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# Optional extras from pyproject.toml, e.g. --build-arg EXTRAS=sentry
ARG EXTRAS=""
RUN python -m venv /opt/citywok
WORKDIR /src
# Dependencies first (pinned with == in pyproject.toml), so a source change reuses this layer.
COPY pyproject.toml README.md ./
RUN python -c 'import os, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
extras = [d for e in os.environ["EXTRAS"].split(",") if e for d in p["optional-dependencies"][e]]; \
print("\n".join(p["dependencies"] + extras))' > /tmp/requirements.txt \
    && /opt/citywok/bin/pip install --only-binary=:all: -r /tmp/requirements.txt
COPY citywok ./citywok
COPY matcher ./matcher
COPY fetcher ./fetcher
COPY operator ./operator
RUN /opt/citywok/bin/pip install --no-deps . \
    && /opt/citywok/bin/python -m compileall -q /opt/citywok/lib \
    && /opt/citywok/bin/citywok --version

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
# The source commit, e.g. --build-arg REVISION=$(git rev-parse HEAD): citywok_build_info{revision} on
# every component's /metrics.
ARG REVISION=unknown
LABEL org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.title="citywok" \
      org.opencontainers.image.description="Which episode, and where in it, is this clip from: matcher, fetcher and operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/citywok/citywok"
RUN groupadd --system --gid 10001 citywok \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin citywok \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /opt/citywok /opt/citywok
ENV CITYWOK_REVISION=${REVISION} \
    PATH=/opt/citywok/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/data \
    TMPDIR=/tmp \
    HOME=/tmp \
    HOST=0.0.0.0 \
    PORT=8000 \
    CITYWOK_HEALTH_URL=http://127.0.0.1:8000/healthz
USER 10001:10001
WORKDIR /data
VOLUME ["/data", "/tmp"]
EXPOSE 8000
# For `docker run` of the matcher (Kubernetes uses the pods' own probes). Set CITYWOK_HEALTH_URL
# to http://127.0.0.1:8080/healthz for the operator; `fetch --once` and the offline commands exit.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['CITYWOK_HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["citywok"]
CMD ["serve"]

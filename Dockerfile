# syntax=docker/dockerfile:1
# The devyard manager image, for deploy/kubernetes: the manager with the pinned code-server engine installed at
# build time (provisioning installs extensions with it), run as a non-root user. Bases are pinned by version.
#
#   docker build -t registry.example.com/devyard:0.1.0 .
#   docker push registry.example.com/devyard:0.1.0
#
# The engine is built the way `devyard engine install` builds it anywhere (Node 24 from the npm package `node`,
# native modules compiled with node-gyp): that needs npm and Debian's build-essential, pkg-config, python3 and
# libkrb5-dev in the build stage only.

ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm
ARG NODE_IMAGE=docker.io/library/node:20.19.5-bookworm-slim

FROM ${NODE_IMAGE} AS node

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential pkg-config libkrb5-dev git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /src
COPY deploy/requirements.lock ./deploy/requirements.lock
RUN python -m venv /opt/devyard && /opt/devyard/bin/pip install --no-cache-dir -r deploy/requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/devyard/bin/pip install --no-cache-dir --no-deps .
ENV DEVYARD_ENGINE_DIR=/opt/devyard-engine
RUN /opt/devyard/bin/devyard engine install && rm -rf /root/.npm

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git openssh-client openssh-server ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 devyard \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/devyard --create-home --shell /usr/sbin/nologin devyard
COPY --from=build /opt/devyard /opt/devyard
COPY --from=build /opt/devyard-engine /opt/devyard-engine
ENV PATH=/opt/devyard/bin:$PATH \
    DEVYARD_ENGINE_DIR=/opt/devyard-engine \
    DEVYARD_DATA_DIR=/var/lib/devyard/data \
    DEVYARD_HOST=0.0.0.0 \
    DEVYARD_PORT=8000 \
    DEVYARD_OS_ACCOUNTS=off \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/devyard
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["devyard", "up", "--no-install-engine"]

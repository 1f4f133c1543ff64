# One image for every batchgate process (api, worker, beat, flower, simulator, migrate):
# target `app`; `entrypoint.sh <role>` picks the process (the same command `make run` gives
# it, from stack/programs.py). Target `nginx` adds nginx to it, so its config is rendered
# at start from the same BATCHGATE_* settings as the API's (body limit, long-poll wait, TLS)
# by the same code; certificates come from a mounted folder (/etc/batchgate/certs).
# The dashboard's assets come prebuilt with api/ (api/dashboard/dist, checked in; `make
# dashboard` rebuilds them): no Node stage, no Node in the image.
#
# Built with BuildKit (`make images`; no `# syntax=` line, so no frontend image is pulled).
# PYTHON_IMAGE is the base: the official image by default, or the stand-in `make base-images`
# builds from Debian packages where no container registry is reachable. pip's CA bundle and
# configuration (index URLs, which may hold credentials) come in as build secrets `pip_ca` and
# `pip_conf`, mounted for the one RUN that installs: never written into a layer.

ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS app
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml setup.cfg constraints.txt README.md nginx.conf ./
COPY --chmod=755 entrypoint.sh ./
COPY api/ api/
COPY workers/ workers/
COPY batching/ batching/
COPY baseline/ baseline/
COPY batchgate/ batchgate/
COPY stack/ stack/
RUN --mount=type=secret,id=pip_ca --mount=type=secret,id=pip_conf \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi; \
    pip install -c constraints.txt . \
    && useradd --system --user-group --uid 10001 --home-dir /home/batchgate --create-home batchgate
# Read-only code owned by root; the processes write only to /tmp.
USER batchgate
EXPOSE 8000
ENTRYPOINT ["/app/entrypoint.sh"]
CMD ["api"]

FROM app AS nginx
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx openssl \
    && rm -rf /var/lib/apt/lists/*
# nginx's master stays root, only to read the mounted private key (certbot's, and most, are
# readable by root alone); its workers, which handle every connection, run as batchgate
# (`user` in the rendered nginx.conf). It listens on high ports (compose publishes 80 and
# 443 onto them); pid, temp folders and logs under /tmp/nginx or on stdio (see nginx.conf).
EXPOSE 8080 8443
# nginx's graceful stop: open requests (long-polls, streams) finish before it exits.
STOPSIGNAL SIGQUIT
CMD ["nginx"]

# The load test (docker compose --profile loadtest): Locust and the loadtest/ folder on the
# app image, at the version constraints.txt pins.
FROM app AS loadtest
USER root
COPY loadtest/ loadtest/
RUN --mount=type=secret,id=pip_ca --mount=type=secret,id=pip_conf \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi; \
    pip install -c constraints.txt locust
USER batchgate
ENTRYPOINT ["locust"]

# The default target is the application image.
FROM app

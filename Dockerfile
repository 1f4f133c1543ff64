# syntax=docker/dockerfile:1
# One image for every batchgate process (api, worker, beat, flower, simulator, migrate):
# target `app`; `entrypoint.sh <role>` picks the process (the same command `make run` gives
# it, from stack/programs.py). Target `nginx` adds nginx to it, so its config is rendered
# at start from the same BATCHGATE_* settings as the API's (body limit, long-poll wait, TLS)
# by the same code; certificates come from a mounted folder (/etc/batchgate/certs).
# The dashboard's assets come prebuilt with api/ (api/dashboard/dist, checked in; `make
# dashboard` rebuilds them): no Node stage, no Node in the image.

FROM python:3.11-slim AS app
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
RUN pip install -c constraints.txt . \
    && useradd --system --user-group --uid 10001 --home-dir /home/batchgate --create-home batchgate
# Read-only code owned by root; the processes write only to /tmp.
USER batchgate
EXPOSE 8000
ENTRYPOINT ["/app/entrypoint.sh"]
CMD ["api"]

FROM app AS nginx
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/*
# nginx's master stays root, only to read the mounted private key (certbot's, and most, are
# readable by root alone); its workers, which handle every connection, run as batchgate
# (`user` in the rendered nginx.conf). It listens on high ports (compose publishes 80 and
# 443 onto them); pid, temp folders and logs under /tmp/nginx or on stdio (see nginx.conf).
EXPOSE 8080 8443
CMD ["nginx"]

# The default target is the application image.
FROM app

# syntax=docker/dockerfile:1
# One image for every batchgate process (api, worker, beat, flower, simulator): target `app`.
# Target `nginx` adds nginx to it, so its config is rendered at start from the same
# BATCHGATE_* settings as the API's (body limit, long-poll wait) by the same code.

# The dashboard's assets, built with Node here only: the app image serves them from Flask.
FROM node:20-slim AS dashboard
WORKDIR /dashboard
COPY api/dashboard/package.json api/dashboard/package-lock.json api/dashboard/build.mjs ./
COPY api/dashboard/src/ src/
RUN npm ci --no-audit --no-fund --ignore-scripts && npm run build

FROM python:3.11-slim AS app
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml setup.cfg README.md nginx.conf ./
COPY api/ api/
COPY workers/ workers/
COPY batching/ batching/
COPY baseline/ baseline/
COPY batchgate/ batchgate/
COPY --from=dashboard /dashboard/dist/ api/dashboard/dist/
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /home/batchgate --create-home batchgate
# Read-only code owned by root; the processes write only to /tmp.
USER batchgate
EXPOSE 8000
CMD ["gunicorn", "--worker-class", "gevent", "--bind", "0.0.0.0:8000", "api.wsgi:app"]

FROM app AS nginx
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/*
USER batchgate
EXPOSE 8080
# Unprivileged: pid, temp folders and logs under /tmp/nginx or on stdio (see nginx.conf).
CMD ["sh", "-c", "python -m batchgate.cluster render --compose --run-dir /tmp/nginx --template /app/nginx.conf && exec nginx -c /tmp/nginx/nginx.conf -p /tmp/nginx/ -e stderr"]

# The default target is the application image.
FROM app

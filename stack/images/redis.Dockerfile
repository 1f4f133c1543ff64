# A stand-in for redis:7-alpine built from Debian packages (`make base-images`): Debian
# bookworm's Redis 7.0, run as the `redis` user the package creates, data in /data.
ARG DEBIAN_IMAGE=batchgate-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]

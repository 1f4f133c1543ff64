# A stand-in for python:3.11-slim built from Debian packages, for machines without a container
# registry (`make base-images`): Debian bookworm's Python 3.11 in a virtualenv at /usr/local,
# so `python` and `pip` are found on PATH as in the official image.
ARG DEBIAN_IMAGE=batchgate-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local/python \
    && ln -s /usr/local/python/bin/python /usr/local/python/bin/pip /usr/local/bin/
ENV PATH=/usr/local/python/bin:$PATH LANG=C.UTF-8
CMD ["python3"]

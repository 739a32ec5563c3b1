# pageholder: the registry, and the simulated subsystems of docker-compose.yml.
# Debian's own python3 on debian:bookworm-slim (a base that can also be made locally
# with mmdebstrap, as tests/containers/run.sh does). Stage "build" makes wheels of the
# project and everything it needs and installs them with --no-index into a venv; the
# final stage copies only that venv, so the image needs no network at run time.

FROM debian:bookworm-slim AS python
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv \
    && apt-get clean && rm -rf /var/lib/apt/lists/*

FROM python AS build
# The whole context (.dockerignore leaves out tests, caches, venvs): the wheel is built
# from whatever source folders pyproject.toml maps, so a new folder needs no edit here.
COPY . /src
RUN python3 -m venv /opt/pageholder \
    && /opt/pageholder/bin/pip wheel --no-cache-dir --wheel-dir /wheels /src \
    && /opt/pageholder/bin/pip install --no-cache-dir --no-index /wheels/*.whl \
    && /opt/pageholder/bin/pip uninstall --yes --quiet pip setuptools

FROM python
RUN useradd --system --uid 10001 --create-home --home-dir /home/pageholder pageholder \
    && mkdir /data && chown pageholder:pageholder /data
COPY --from=build /opt/pageholder /opt/pageholder
ENV PATH=/opt/pageholder/bin:$PATH \
    PAGEHOLDER_DATA_DIR=/data
USER pageholder
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["pageholder", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]

# pageholder: the registry, and the simulated subsystems of docker-compose.yml.
# Stage 1 builds wheels for the project and everything it needs; stage 2 installs them
# with --no-index, so the image needs no network at run time.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY client ./client
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /home/pageholder pageholder \
    && mkdir /data && chown pageholder:pageholder /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
USER pageholder
ENV PAGEHOLDER_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["pageholder", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]

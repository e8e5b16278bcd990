# pyngest in a container: `pyngest start` (self-hosted mode) on Debian slim, as a non-root user,
# with its SQLite database in the /data volume. See docs/self-hosting.md.
#
#   docker build -t pyngest .
#   docker run -p 8288:8288 -v pyngest-data:/data \
#     -e INNGEST_SIGNING_KEY=$(openssl rand -hex 32) -e INNGEST_EVENT_KEY=my-event-key pyngest

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /dist .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin pyngest \
    && mkdir -p /data && chown pyngest:pyngest /data
COPY --from=build /dist/ /tmp/dist/
# with the OpenTelemetry exporter, so INNGEST_OTEL_ENDPOINT works in the image
RUN pip install --no-cache-dir "$(ls /tmp/dist/*.whl)[otel]" && rm -rf /tmp/dist
USER pyngest
WORKDIR /data
VOLUME ["/data"]
# Listen on every interface of the container; keep the database in the volume.
ENV INNGEST_HOST=0.0.0.0 \
    INNGEST_PORT=8288 \
    INNGEST_SQLITE_DIR=/data \
    PYTHONUNBUFFERED=1
EXPOSE 8288
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"INNGEST_PORT\"]}/health', timeout=4)"
# SIGTERM lets in-flight app requests finish (--shutdown-grace, 30 s by default)
STOPSIGNAL SIGTERM
ENTRYPOINT ["pyngest"]
CMD ["start"]

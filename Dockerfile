# watcher in a container: the README's install step (pip install .) in a build stage,
# a slim non-root runtime, the database on the /data volume, the config at /config/watcher.toml.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY watcher ./watcher
COPY migrations ./migrations
RUN python -m venv /opt/watcher \
    && /opt/watcher/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 watcher \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin watcher \
    && mkdir -p /data /config/config \
    && chown watcher:watcher /data
COPY --from=build /opt/watcher /opt/watcher
COPY watcher.example.toml /config/watcher.toml
COPY config/sample-feed.xml /config/config/sample-feed.xml
ENV PATH=/opt/watcher/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    WATCHER_CONFIG=/config/watcher.toml \
    WATCHER_DATABASE=sqlite:////data/watcher.db
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["watcher"]
CMD ["run"]

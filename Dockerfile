# watcher in a container (README.md, "Running it as a service").
#
# build: the README's install step, `pip install '.[postgres]'` of this checkout, into a virtual
#        environment at /opt/watcher (the PostgreSQL driver included, so one image serves both
#        config/compose.yaml and config/compose.postgres.yaml).
# final: the same slim Python image plus that environment and nothing else (no compiler, no apt
#        packages), running as uid 10001 with the database on the /data volume and the config
#        at /config/watcher.toml.
#
# The daemon applies database migrations itself at every start, before it polls anything, so a
# new image needs no separate migration step. It stops within 8 s of SIGTERM (in-flight polls
# get that long), inside Docker's default 10 s before SIGKILL.

# Both stages use the same image: the virtual environment links to that image's Python.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
# Only what `pip install` reads (pyproject.toml's [tool.setuptools]), so editing the tests or the
# deployment files does not rebuild this layer.
COPY pyproject.toml README.md ./
COPY watcher ./watcher
COPY migrations ./migrations
COPY config/entities ./config/entities
RUN python -m venv /opt/watcher \
    && /opt/watcher/bin/pip install --no-cache-dir '.[postgres]'

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 watcher \
    && useradd --system --uid 10001 --gid watcher --no-create-home --home-dir /data \
        --shell /usr/sbin/nologin watcher \
    && install -d -o watcher -g watcher -m 0750 /data
COPY --from=build /opt/watcher /opt/watcher
# The default config: the example feeds and rules, alerts printed to the container's log, and the
# health endpoint on 127.0.0.1:9464 for the HEALTHCHECK below. Mount your own over it.
COPY config/watcher.container.toml /config/watcher.toml
COPY config/sample-feed.xml /config/sample-feed.xml
ENV PATH=/opt/watcher/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    WATCHER_CONFIG=/config/watcher.toml \
    WATCHER_DATABASE=sqlite:////data/watcher.db
# A new named volume starts as a copy of /data here: empty, owned by uid 10001.
VOLUME ["/data"]
USER 10001:10001
WORKDIR /data
# Asks the daemon's /readyz through [watcher] http in the config (no -c: it follows
# $WATCHER_CONFIG, as `run` does). A config without `http` never turns healthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["watcher", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["watcher"]
CMD ["run"]

# Multi-stage build of a static clickpipe binary.
#   docker build -t clickpipe .
#   docker run --stop-timeout 30 -p 8080:8080 -p 127.0.0.1:8081:8081 -v clickpipe-data:/data clickpipe
# The image runs `serve --config /etc/clickpipe/config.yaml` (the documented
# defaults); mount your own over it, or override keys with CLICKPIPE_* env:
#   docker run ... -v $PWD/config.yaml:/etc/clickpipe/config.yaml:ro clickpipe
#   docker run ... -e CLICKPIPE_INGEST_SOURCES=web=wk_... -e CLICKPIPE_QUERY_TOKENS=qt_... clickpipe
# --stop-timeout must exceed shutdown_timeout (25 s by default) so the drain
# finishes before the runtime sends SIGKILL.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o /out/clickpipe . && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/clickpipe /usr/local/bin/clickpipe
COPY config.yaml /etc/clickpipe/config.yaml
COPY --from=build --chown=nonroot:nonroot /out/data /data
# The query listener must bind all interfaces inside the container to be
# published at all; publish it on the host's loopback only (see above) and
# configure query.tokens (docs/security.md).
ENV CLICKPIPE_DATA_DIR=/data \
    CLICKPIPE_INGEST_LISTEN=:8080 \
    CLICKPIPE_QUERY_LISTEN=:8081 \
    CLICKPIPE_QUERY_ALLOW_REMOTE=true
VOLUME ["/data"]
EXPOSE 8080 8081
USER nonroot:nonroot
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/clickpipe"]
CMD ["serve", "--config", "/etc/clickpipe/config.yaml"]

# syntax=docker/dockerfile:1
#
# Wirelace's one image: the node daemon, its CLI, the relay, the CNI
# installer and the CNI plugins, all static Go binaries in
# /opt/wirelace/bin. wirelace-install copies the plugins from there into
# the host's /opt/cni/bin (its --bin-src-dir default).
#
#   docker build -t wirelace/wirelace:0.1.0 .
#
# The lab builds the same final layer from `make build` output without
# Docker (e2e/image reads the COPY, ENV and ENTRYPOINT lines of the final
# stage below, so keep them in this shape: one COPY --from=build of the
# binaries into /opt/wirelace/bin/).

ARG GO_VERSION=1.26.8

# Cross-compiles on the build host's platform: the binaries are pure Go.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
# Static (no cgo): the final image has no libc. -trimpath keeps build paths
# out of the binaries.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/ \
        ./cmd/wirelaced ./cmd/wirelacectl ./cmd/wirelace-relay \
        ./cmd/wirelace-install ./plugins/wirelace ./plugins/wirelace-ipam

# distroless/static: CA certificates, /etc/passwd with the nonroot user
# (65532) the relay runs as, no shell. The default user stays root:
# wirelaced needs CAP_NET_ADMIN in the host network namespace and writes
# root-owned host paths; the relay's StatefulSet sets runAsUser 65532.
FROM gcr.io/distroless/static-debian12
COPY --from=build \
    /out/wirelaced \
    /out/wirelacectl \
    /out/wirelace-relay \
    /out/wirelace-install \
    /out/wirelace \
    /out/wirelace-ipam \
    /opt/wirelace/bin/
# One copy of each binary, on PATH, so `kubectl exec ... -- wirelacectl
# status` works and the manifests name commands, not paths.
ENV PATH=/opt/wirelace/bin:/usr/local/bin:/usr/bin:/bin
ENTRYPOINT ["/opt/wirelace/bin/wirelaced"]

# The manager image: a static binary on a minimal, non-root base.
# Build with `make docker-build` where a Docker engine runs (not on the
# project's CI machines, which have none).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/riposte ./cmd/riposte

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/riposte /riposte
USER 65532:65532
ENTRYPOINT ["/riposte"]

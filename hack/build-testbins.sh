#!/usr/bin/env bash
# Builds the binaries Riposte's tests and `make run` need, from source through the
# Go module proxy (nothing else can be downloaded here): kube-apiserver and kubectl
# from k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, Alertmanager, and
# SeaweedFS (the S3 server the record sink is tested against).
#
# Each binary is cached outside the clone in $RIPOSTE_CACHE (default
# ~/.cache/riposte/bin), keyed by version, and copied into ./bin/k8s/<version>.
# A binary already present is reused, so a warm machine builds nothing.
#
# Usage: hack/build-testbins.sh [controlplane|alertmanager|helm|seaweedfs|all]
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
ALERTMANAGER_VERSION="${ALERTMANAGER_VERSION:-0.28.1}"
HELM_VERSION="${HELM_VERSION:-3.22.0}"
# SeaweedFS publishes no release tags as Go versions; this pseudo-version is
# the one the module proxy serves here.
SEAWEEDFS_VERSION="${SEAWEEDFS_VERSION:-0.0.0-20261109003541-7506e5f91cd6}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${RIPOSTE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/riposte}"
BIN_CACHE="$CACHE/bin"
BUILD_DIR="$CACHE/build"
ASSETS="$ROOT/bin/k8s/$KUBE_VERSION"   # what envtest's KUBEBUILDER_ASSETS points at
mkdir -p "$BIN_CACHE" "$BUILD_DIR" "$ASSETS"

log() { echo "build-testbins: $*" >&2; }

# install_cached NAME VERSION DEST: copy the cached binary into DEST if present.
install_cached() {
  local cached="$BIN_CACHE/$1-$2"
  if [[ -x "$cached" ]]; then
    if ! cmp -s "$cached" "$3/$1"; then cp "$cached" "$3/$1"; fi
    return 0
  fi
  return 1
}

build_kube() {
  local need=0
  for b in kube-apiserver kubectl; do
    install_cached "$b" "$KUBE_VERSION" "$ASSETS" || need=1
  done
  [[ $need == 0 ]] && return 0
  log "building kube-apiserver and kubectl v$KUBE_VERSION from source (about 10 minutes on 2 cores)"
  local dir="$BUILD_DIR/kubernetes-$KUBE_VERSION"
  mkdir -p "$dir"
  local staging="v0.${KUBE_VERSION#1.}"
  # k8s.io/kubernetes replaces its staging modules with local paths that do not
  # exist in the module zip; pin each to the matching published v0.x.y instead.
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
  {
    echo "module riposte.dev/hack/kubernetes"
    echo
    echo "go $(sed -n 's/^go \(.*\)/\1/p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
    echo ")"
  } > "$dir/go.mod"
  (
    cd "$dir"
    export GOFLAGS=-mod=mod CGO_ENABLED=0
    go build -trimpath -ldflags="-s -w" -o "$BIN_CACHE/kube-apiserver-$KUBE_VERSION.tmp" k8s.io/kubernetes/cmd/kube-apiserver
    go build -trimpath -ldflags="-s -w" -o "$BIN_CACHE/kubectl-$KUBE_VERSION.tmp" k8s.io/kubernetes/cmd/kubectl
  )
  for b in kube-apiserver kubectl; do
    mv "$BIN_CACHE/$b-$KUBE_VERSION.tmp" "$BIN_CACHE/$b-$KUBE_VERSION"
    install_cached "$b" "$KUBE_VERSION" "$ASSETS"
  done
}

build_etcd() {
  install_cached etcd "$ETCD_VERSION" "$ASSETS" && return 0
  log "building etcd v$ETCD_VERSION from source"
  local dir="$BUILD_DIR/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  # The server module's own replace directives point at sibling folders, so
  # `go install` refuses it; require it and its siblings at the same version.
  cat > "$dir/go.mod" <<GOMOD
module riposte.dev/hack/etcd

go 1.24

require (
	go.etcd.io/etcd/server/v3 v$ETCD_VERSION
	go.etcd.io/etcd/api/v3 v$ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 v$ETCD_VERSION
	go.etcd.io/etcd/client/v3 v$ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 v$ETCD_VERSION
)
GOMOD
  (
    cd "$dir"
    export GOFLAGS=-mod=mod CGO_ENABLED=0
    go build -trimpath -ldflags="-s -w" -o "$BIN_CACHE/etcd-$ETCD_VERSION.tmp" go.etcd.io/etcd/server/v3
  )
  mv "$BIN_CACHE/etcd-$ETCD_VERSION.tmp" "$BIN_CACHE/etcd-$ETCD_VERSION"
  install_cached etcd "$ETCD_VERSION" "$ASSETS"
}

# build_go_install NAME VERSION PACKAGE: a tool whose module builds with
# `go install` as it is, cached and copied into bin/.
build_go_install() {
  local name="$1" version="$2" pkg="$3" dest="$ROOT/bin"
  install_cached "$name" "$version" "$dest" && return 0
  log "building $name v$version from source"
  local gobin="$BUILD_DIR/$name-$version"
  mkdir -p "$gobin"
  CGO_ENABLED=0 GOBIN="$gobin" go install -trimpath -ldflags="-s -w" "$pkg@v$version"
  cp "$gobin/$name" "$BIN_CACHE/$name-$version"
  install_cached "$name" "$version" "$dest"
}

# build_seaweedfs: `weed`, the S3-compatible server the record sink's tests
# store into. Its go.mod has a replace directive, so `go install` refuses it:
# a module of our own requires it and repeats that replace.
build_seaweedfs() {
  install_cached weed "$SEAWEEDFS_VERSION" "$ROOT/bin" && return 0
  log "building SeaweedFS (weed) v$SEAWEEDFS_VERSION from source (about 6 minutes on 2 cores)"
  local dir="$BUILD_DIR/seaweedfs-$SEAWEEDFS_VERSION"
  mkdir -p "$dir"
  cat > "$dir/go.mod" <<GOMOD
module riposte.dev/hack/seaweedfs

go 1.25

require github.com/seaweedfs/seaweedfs v$SEAWEEDFS_VERSION

replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0
GOMOD
  (
    cd "$dir"
    export GOFLAGS=-mod=mod CGO_ENABLED=0
    go build -trimpath -ldflags="-s -w" -o "$BIN_CACHE/weed-$SEAWEEDFS_VERSION.tmp.$$" github.com/seaweedfs/seaweedfs/weed
  )
  mv "$BIN_CACHE/weed-$SEAWEEDFS_VERSION.tmp.$$" "$BIN_CACHE/weed-$SEAWEEDFS_VERSION"
  install_cached weed "$SEAWEEDFS_VERSION" "$ROOT/bin"
}

build_alertmanager() { build_go_install alertmanager "$ALERTMANAGER_VERSION" github.com/prometheus/alertmanager/cmd/alertmanager; }
build_helm() { build_go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm; }

case "${1:-all}" in
  controlplane) build_etcd; build_kube ;;
  alertmanager) build_alertmanager ;;
  helm) build_helm ;;
  seaweedfs) build_seaweedfs ;;
  all) build_etcd; build_alertmanager; build_helm; build_kube; build_seaweedfs ;;
  *) echo "usage: $0 [controlplane|alertmanager|helm|seaweedfs|all]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Builds the Kubernetes test bed's binaries from the Go module proxy: no Docker, no release downloads.
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm, kubeconform
#
# and fetches the Prometheus operator's CRDs (hack/prometheus-crds.sh) for the chart's schema checks.
#
# Pinned in hack/k8s/versions.env, cached outside the repo in
# ${CITYWOK_CACHE:-~/.cache/citywok}/k8s-<version>/bin/ (one stamp per component keyed on its pin),
# so a second run only checks the stamps. Progress goes to stderr; the last line on stdout is the
# bin directory, for callers (tests/k8s/conftest.py) to capture.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=k8s/versions.env
source "$HERE/k8s/versions.env"
# shellcheck source-path=SCRIPTDIR source=k8s/helm.sh
source "$HERE/k8s/helm.sh"

CACHE_ROOT=${CITYWOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/citywok}
CACHE=$CACHE_ROOT/k8s-$K8S_VERSION
BIN=$CACHE/bin
SRC=$CACHE/src
STARTED=$SECONDS

log() { printf '[k8s-testenv %4ds] %s\n' "$((SECONDS - STARTED))" "$*" >&2; }
die() { printf '[k8s-testenv] ERROR: %s\n' "$*" >&2; exit 1; }

# stamp_ok NAME PIN BINARY...: true when every binary exists and NAME was built from PIN.
stamp_ok() {
    local name=$1 pin=$2 b
    shift 2
    [[ -f $BIN/.stamp-$name && $(<"$BIN/.stamp-$name") == "$pin" ]] || return 1
    for b in "$@"; do [[ -x $BIN/$b ]] || return 1; done
}

all_ok() {
    stamp_ok etcd "$ETCD_VERSION" etcd &&
        stamp_ok kubernetes "$K8S_VERSION" kube-apiserver kube-controller-manager kube-scheduler kubectl &&
        stamp_ok kwok "$KWOK_VERSION" kwok &&
        [[ -f $CACHE/kwok-stages/.stamp && $(<"$CACHE/kwok-stages/.stamp") == "$KWOK_VERSION" ]] &&
        stamp_ok helm "$HELM_VERSION" helm && helm_flags_ok "$BIN" &&
        stamp_ok kubeconform "$KUBECONFORM_VERSION" kubeconform &&
        bash "$HERE/prometheus-crds.sh" --offline >/dev/null 2>&1
}

if all_ok; then
    log "cached: $BIN (k8s $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION, helm $HELM_VERSION ($HELM_FLAGS_ID), kubeconform $KUBECONFORM_VERSION, prometheus-operator CRDs $PROMETHEUS_OPERATOR_VERSION)"
    echo "$BIN"
    exit 0
fi

command -v go >/dev/null 2>&1 ||
    die "'go' is not on PATH: the test bed is built from the Go module proxy and needs Go >= 1.26 (https://go.dev/dl/)"

mkdir -p "$BIN" "$SRC"
cd "$SRC"  # outside any go.mod the caller may be in
exec 9>"$CACHE/.lock"
log "waiting for the build lock $CACHE/.lock"
flock 9
log "building into $BIN with $(go version | cut -d' ' -f3) (cold: about 11 min on 2 idle cores, longer when they are shared)"

# Sane parallelism on a shared 2-core machine; static binaries; module mode even without go.sum.
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0
export GOMAXPROCS=${GOMAXPROCS:-2}
GOBUILD=(go build -trimpath -p "$GOMAXPROCS")

# install NAME PIN DIR: move the freshly built binaries of DIR into BIN, then write NAME's stamp.
install_built() {
    local name=$1 pin=$2 dir=$3 f
    for f in "$dir"/*; do mv -f "$f" "$BIN/"; done
    rmdir "$dir"
    printf '%s' "$pin" >"$BIN/.stamp-$name"
}

build_etcd() {
    stamp_ok etcd "$ETCD_VERSION" etcd && return
    log "etcd $ETCD_VERSION: wrapper module around go.etcd.io/etcd/server/v3/etcdmain"
    local dir=$SRC/etcd out=$BIN/.tmp-etcd
    rm -rf "$dir" "$out" && mkdir -p "$dir" "$out"
    cp "$HERE/k8s/etcd/main.go" "$dir/"
    (
        cd "$dir"
        go mod init citywok.local/testbed/etcd >/dev/null 2>&1
        go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
        go mod tidy >&2
        "${GOBUILD[@]}" -ldflags "-s -w" -o "$out/etcd" .
    )
    install_built etcd "$ETCD_VERSION" "$out"
    log "etcd: done"
}

# Writes a go.mod that requires k8s.io/kubernetes and points every staging module (replaced by a
# ./staging/ path upstream) at its published v0.MINOR.PATCH tag; the list comes from upstream's go.mod.
write_kubernetes_gomod() {
    local dir=$1 upstream_mod staging_version
    upstream_mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
    staging_version="v0.${K8S_VERSION#v1.}"
    local -a staging
    mapfile -t staging < <(go mod edit -json "$upstream_mod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"):
        print(r["Old"]["Path"])')
    ((${#staging[@]} > 0)) || die "no ./staging/ replace directives found in $upstream_mod"
    log "kubernetes $K8S_VERSION: ${#staging[@]} staging modules -> $staging_version (from upstream go.mod)"
    (
        cd "$dir"
        go mod init citywok.local/testbed/kubernetes >/dev/null 2>&1
        local -a edits=(-go="$(go mod edit -json "$upstream_mod" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Go"])')"
            -require="k8s.io/kubernetes@$K8S_VERSION")
        local m
        for m in "${staging[@]}"; do edits+=(-replace="$m=$m@$staging_version"); done
        go mod edit "${edits[@]}"
    )
}

build_kubernetes() {
    stamp_ok kubernetes "$K8S_VERSION" kube-apiserver kube-controller-manager kube-scheduler kubectl && return
    local dir=$SRC/kubernetes out=$BIN/.tmp-kubernetes
    rm -rf "$dir" "$out" && mkdir -p "$dir" "$out"
    write_kubernetes_gomod "$dir"
    local info build_date minor=${K8S_VERSION#v1.}
    minor=${minor%%.*}
    info=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Info"])')
    build_date=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["Time"])' "$info")
    local ldflags="-s -w" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
    done
    local -a cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
    log "kubernetes $K8S_VERSION: downloading modules"
    (cd "$dir" && go mod download k8s.io/kubernetes >&2 && go list "${cmds[@]/#/k8s.io/kubernetes/cmd/}" >/dev/null)
    log "kubernetes $K8S_VERSION: compiling ${cmds[*]} (the long pole)"
    (cd "$dir" && "${GOBUILD[@]}" -ldflags "$ldflags" -o "$out/" "${cmds[@]/#/k8s.io/kubernetes/cmd/}")
    install_built kubernetes "$K8S_VERSION" "$out"
    log "kubernetes: done"
}

# go_install NAME PIN PACKAGE LDFLAGS: `go install PACKAGE@PIN` into BIN.
go_install() {
    local name=$1 pin=$2 pkg=$3 ldflags=$4 out=$BIN/.tmp-$1
    stamp_ok "$name" "$pin" "$name" && return
    log "$name $pin: go install $pkg@$pin"
    rm -rf "$out" && mkdir -p "$out"
    # `go install pkg@version` builds the module on its own terms: -mod is not allowed there.
    GOFLAGS=-buildvcs=false GOBIN=$out go install -trimpath -p "$GOMAXPROCS" -ldflags "$ldflags" "$pkg@$pin"
    install_built "$name" "$pin" "$out"
    log "$name: done"
}

# kwok's default stages (what `kwok` applies with no stage config): nodes initialise and keep a
# lease, pods go Running and Ready, and deleted pods go away. Copied from the pinned module.
copy_kwok_stages() {
    local dst=$CACHE/kwok-stages src f
    local -a stages=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
        pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml)
    [[ -f $dst/.stamp && $(<"$dst/.stamp") == "$KWOK_VERSION" ]] && return
    src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')/kustomize/stage
    rm -rf "$dst" && mkdir -p "$dst"
    for f in "${stages[@]}"; do cp "$src/$f" "$dst/"; done
    printf '%s' "$KWOK_VERSION" >"$dst/.stamp"
    log "kwok stages: ${stages[*]##*/}"
}

build_etcd
go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
copy_kwok_stages
go_install kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform \
    "-s -w -X main.version=$KUBECONFORM_VERSION"
if ! stamp_ok helm "$HELM_VERSION" helm || ! helm_flags_ok "$BIN"; then
    rm -f "$BIN/.stamp-helm"  # rebuilt with its Kubernetes version link flags (hack/k8s/helm.sh)
    go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$(helm_ldflags)"
    helm_mark_flags "$BIN"
fi
log "prometheus-operator CRDs: $(bash "$HERE/prometheus-crds.sh")"
build_kubernetes

all_ok || die "build finished but $BIN is incomplete"
log "ready: $BIN"
echo "$BIN"

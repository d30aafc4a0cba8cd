#!/usr/bin/env bash
# Builds the chart and CI tools from the Go module proxy (no release downloads), cached outside the repo:
#
#   hack/tools.sh [actionlint] [helm] [kubeconform]     # default: all three
#
# Into ${CITYWOK_CACHE:-~/.cache/citywok}/tools/bin, one stamp per tool keyed on its pin, so a second
# run only checks the stamps. helm and kubeconform use the pins of the Kubernetes test bed
# (hack/k8s/versions.env) and are linked from its cache when hack/k8s-testenv.sh already built them.
# Progress goes to stderr; the last line on stdout is the bin directory.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=k8s/versions.env
source "$HERE/k8s/versions.env"
# shellcheck source-path=SCRIPTDIR source=k8s/helm.sh
source "$HERE/k8s/helm.sh"
ACTIONLINT_VERSION=v1.7.12

CACHE_ROOT=${CITYWOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/citywok}
BIN=$CACHE_ROOT/tools/bin
TESTBED_BIN=$CACHE_ROOT/k8s-$K8S_VERSION/bin

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }

stamp_ok() { [[ -x $BIN/$1 && -f $BIN/.stamp-$1 && $(<"$BIN/.stamp-$1") == "$2" ]]; }

# ensure NAME PIN PACKAGE LDFLAGS [LINK]  (LINK=no: never link the test bed's copy)
ensure() {
    local name=$1 pin=$2 pkg=$3 ldflags=$4 link=${5:-yes} out
    stamp_ok "$name" "$pin" && return
    if [[ $link == yes && -x $TESTBED_BIN/$name && -f $TESTBED_BIN/.stamp-$name && $(<"$TESTBED_BIN/.stamp-$name") == "$pin" ]]; then
        ln -sfn "$TESTBED_BIN/$name" "$BIN/$name"
        printf '%s' "$pin" >"$BIN/.stamp-$name"
        log "$name $pin: linked from the test-bed cache"
        return
    fi
    command -v go >/dev/null 2>&1 ||
        die "'go' is not on PATH: $name is built with 'go install $pkg@$pin' and needs Go >= 1.24 (https://go.dev/dl/, or the golang-go Debian package)"
    log "$name $pin: go install $pkg@$pin"
    out=$BIN/.tmp-$name
    rm -rf "$out" && mkdir -p "$out"
    GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN=$out \
        go install -trimpath -p "${GOMAXPROCS:-2}" -ldflags "$ldflags" "$pkg@$pin"
    mv -f "$out/$name" "$BIN/$name" && rmdir "$out"
    printf '%s' "$pin" >"$BIN/.stamp-$name"
    log "$name: done"
}

# helm with its Kubernetes version link flags (hack/k8s/helm.sh): linked from the test bed when that
# copy has them, else built here; a copy without them (built or linked before) is replaced once.
ensure_helm() {
    helm_flags_ok "$BIN" && stamp_ok helm "$HELM_VERSION" && return
    rm -f "$BIN/.stamp-helm" "$BIN/helm"
    local link=yes
    helm_flags_ok "$TESTBED_BIN" || link=no
    ensure helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$(helm_ldflags)" "$link"
    helm_mark_flags "$BIN"
}

mkdir -p "$BIN"
exec 9>"$BIN/.lock"
flock 9
(($# > 0)) || set -- actionlint helm kubeconform
for tool in "$@"; do
    case $tool in
        actionlint) ensure actionlint "$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint \
            "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" ;;
        helm) ensure_helm ;;
        kubeconform) ensure kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform \
            "-s -w -X main.version=$KUBECONFORM_VERSION" ;;
        *) die "unknown tool '$tool' (known: actionlint helm kubeconform)" ;;
    esac
done
echo "$BIN"

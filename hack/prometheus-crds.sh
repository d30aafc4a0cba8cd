#!/usr/bin/env bash
# The Prometheus operator's published CRDs (ServiceMonitor, PodMonitor, PrometheusRule, ...), for
# validating the chart's monitoring objects offline. From the pinned Go module
# github.com/prometheus-operator/prometheus-operator (its example/prometheus-operator-crd/*.yaml), via
# the Go module proxy, cached in ${CITYWOK_CACHE:-~/.cache/citywok}/prometheus-operator-<version>/crds.
#
#   hack/prometheus-crds.sh            # fetch when not cached (hack/k8s-testenv.sh runs this)
#   hack/prometheus-crds.sh --offline  # only the cache: fail when it is missing (what the tests use)
#
# The last line on stdout is the folder of CRD files.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=k8s/versions.env
source "$HERE/k8s/versions.env"
CACHE_ROOT=${CITYWOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/citywok}
DEST=$CACHE_ROOT/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION/crds
CRDS=(servicemonitors podmonitors prometheusrules)

cached() {
    [[ -f $DEST/.stamp && $(<"$DEST/.stamp") == "$PROMETHEUS_OPERATOR_VERSION" ]]
}

if cached; then
    echo "$DEST"
    exit 0
fi
if [[ ${1:-} == --offline ]]; then
    printf '[prometheus-crds] ERROR: %s is not cached; run hack/prometheus-crds.sh (or hack/k8s-testenv.sh) once\n' \
        "prometheus-operator $PROMETHEUS_OPERATOR_VERSION CRDs" >&2
    exit 1
fi
command -v go >/dev/null 2>&1 ||
    { echo "[prometheus-crds] ERROR: 'go' is not on PATH (the CRDs come from the Go module proxy)" >&2; exit 1; }
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9
cached && { echo "$DEST"; exit 0; }
printf '[prometheus-crds] github.com/prometheus-operator/prometheus-operator@%s from the Go module proxy\n' \
    "$PROMETHEUS_OPERATOR_VERSION" >&2
src=$(cd / && GOFLAGS=-mod=mod go mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')/example/prometheus-operator-crd
for name in "${CRDS[@]}"; do
    install -m 0644 "$src/monitoring.coreos.com_$name.yaml" "$DEST/"
done
printf '%s' "$PROMETHEUS_OPERATOR_VERSION" >"$DEST/.stamp"
echo "$DEST"

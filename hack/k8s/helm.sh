# Sourced by hack/k8s-testenv.sh and hack/tools.sh (after versions.env): how helm is built.
#
# helm's Makefile links the Kubernetes version of its own client-go into chartutil and the linter
# (-X ...k8sVersionMajor/Minor); `go install` alone leaves the source defaults (1.20), so `helm template`
# without --kube-version would think the cluster is v1.20.0 and refuse `kubeVersion: >=1.25`.
# The cache keeps its scheme (.stamp-helm holds HELM_VERSION, so scripts of older checkouts still
# accept the binary); a second stamp, .flags-helm = HELM_FLAGS_ID, says it has the link flags, so a helm
# built without them is rebuilt once, and nothing else is.
# shellcheck shell=bash
HELM_FLAGS_ID="k8s-version-ldflags"

# helm_flags_ok DIR: the helm in DIR was built with the link flags.
helm_flags_ok() {
    [[ -f $1/.flags-helm && $(<"$1/.flags-helm") == "$HELM_FLAGS_ID" ]]
}

# helm_mark_flags DIR: record that the helm in DIR has them (after building it).
helm_mark_flags() {
    printf '%s' "$HELM_FLAGS_ID" >"$1/.flags-helm"
}

# helm_ldflags: the -ldflags for helm.sh/helm/v3/cmd/helm@HELM_VERSION (reads helm's go.mod).
helm_ldflags() {
    local gomod k8s minor
    gomod=$(GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
    k8s=$(go mod edit -json "$gomod" | python3 -c '
import json, sys
print(next(r["Version"] for r in json.load(sys.stdin)["Require"] if r["Path"] == "k8s.io/client-go"))')
    minor=${k8s#v0.}
    minor=${minor%%.*}
    [[ $minor =~ ^[0-9]+$ ]] || { echo "helm_ldflags: no k8s.io/client-go v0.N in $gomod" >&2; return 1; }
    local flags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" pkg
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
    done
    printf '%s' "$flags"
}

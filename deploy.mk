# Packaging and the dev loop on a local kind cluster (issue 7). Included from the Makefile.
#
#   make kind-up        a kind cluster named citywok (KIND_CLUSTER) with the chart's CRDs applied
#   make deploy         skaffold: build the image, load it into kind, install the chart
#   make dev            skaffold dev: rebuild and redeploy on every change
#   make logs           follow the operator's and matcher pods' logs
#   make port-forward   the identify API on localhost:8000
#   make chart-sync     refresh the chart's copies of the CRDs and the operator's RBAC
#   make chart-lint     helm lint + template with the default and the full values
#   make tools          build helm, kubeconform and actionlint into ~/.cache/citywok/tools/bin
#
# Needs docker, kind, kubectl and skaffold on PATH (not the test bed: they run real containers).

PYTHON ?= python3
CHART := charts/citywok
KIND_CLUSTER ?= citywok
KIND_CONTEXT := kind-$(KIND_CLUSTER)
NAMESPACE ?= citywok
RELEASE ?= citywok
IMAGE ?= ghcr.io/citywok/citywok
TOOLS_BIN := $(HOME)/.cache/citywok/tools/bin
HELM := $(TOOLS_BIN)/helm
# helm built by `go install` assumes Kubernetes v1.20 offline: render for the test bed's version.
KUBE_VERSION := $(shell sed -n 's/^K8S_VERSION=v//p' hack/k8s/versions.env)

.PHONY: tools kind-up kind-down deploy dev logs port-forward chart-sync chart-lint image

tools: ## build helm, kubeconform and actionlint (pinned) into ~/.cache/citywok/tools/bin
	bash hack/tools.sh

kind-up: ## a local kind cluster for the dev loop, with the chart's CRDs
	@command -v kind >/dev/null || { echo "kind is not installed: https://kind.sigs.k8s.io/docs/user/quick-start/" >&2; exit 1; }
	kind get clusters | grep -qx '$(KIND_CLUSTER)' || kind create cluster --name $(KIND_CLUSTER) --config hack/kind/cluster.yaml --wait 120s
	kubectl --context $(KIND_CONTEXT) apply --server-side -f $(CHART)/crds/
	kubectl --context $(KIND_CONTEXT) create namespace $(NAMESPACE) --dry-run=client -o yaml | kubectl --context $(KIND_CONTEXT) apply -f -

kind-down: ## delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

image: ## build the image locally (docker)
	docker build -t $(IMAGE):dev .

deploy: ## build the image, load it into kind and install the chart (skaffold run)
	skaffold run --kube-context $(KIND_CONTEXT) --namespace $(NAMESPACE)

dev: ## skaffold dev loop: rebuild and redeploy on change, stream logs
	skaffold dev --kube-context $(KIND_CONTEXT) --namespace $(NAMESPACE)

logs: ## follow the operator's and the matcher pods' logs
	kubectl --context $(KIND_CONTEXT) -n $(NAMESPACE) logs -f --all-containers --prefix --max-log-requests 20 \
		-l 'app.kubernetes.io/name=citywok,app.kubernetes.io/component in (operator,matcher)'

port-forward: ## the matcher's identify API on http://localhost:8000
	kubectl --context $(KIND_CONTEXT) -n $(NAMESPACE) port-forward svc/$(RELEASE) 8000:8000

chart-sync: ## copy crds/, operator/rbac.yaml and the peering CRDs into the chart (tests/chart checks they match)
	cp crds/fingerprintdb.yaml $(CHART)/crds/fingerprintdb.yaml
	cp operator/rbac.yaml $(CHART)/files/operator-rbac.yaml
	$(PYTHON) -c 'import sys, yaml; docs = [d for d in yaml.safe_load_all(open("operator/peering-crds.yaml")) if d and d["kind"] == "CustomResourceDefinition"]; sys.stdout.write("# Generated from operator/peering-crds.yaml by `make chart-sync`: the CRDs of kopf peering.\n" + yaml.safe_dump_all(docs, sort_keys=False))' > $(CHART)/crds/kopf-peering.yaml

chart-lint: ## helm lint and render the chart with the default and the full values
	bash hack/tools.sh helm >/dev/null
	$(HELM) lint --strict --kube-version $(KUBE_VERSION) $(CHART)
	$(HELM) lint --strict --kube-version $(KUBE_VERSION) $(CHART) -f tests/chart/values-full.yaml
	$(HELM) template $(RELEASE) $(CHART) --kube-version $(KUBE_VERSION) -f tests/chart/values-full.yaml >/dev/null

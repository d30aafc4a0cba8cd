# Kubernetes test bed (issue 8), included from the Makefile.
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm and
# kubeconform from the Go module proxy into ~/.cache/citywok/k8s-<version>/bin (seconds when cached).

.PHONY: testbed testbed-smoke prometheus-crds

testbed: ## build (or find cached) the Kubernetes test-bed binaries: hack/k8s-testenv.sh
	bash hack/k8s-testenv.sh

testbed-smoke: testbed setup ## start the test-bed control plane RUNS times (1), print its start-up seconds, stop it
	$(PY) -c 'import sys; from tests.k8s.testbed import main; main(sys.argv[1:])' --runs $(or $(RUNS),1)

prometheus-crds: ## fetch (or find cached) the Prometheus operator's CRDs for the chart's schema checks
	bash hack/prometheus-crds.sh

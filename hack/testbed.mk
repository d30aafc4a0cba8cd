# Kubernetes test bed (issue 8), included from the Makefile.
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm and
# kubeconform from the Go module proxy into ~/.cache/citywok/k8s-<version>/bin (seconds when cached).

.PHONY: testbed testbed-smoke

testbed: ## build (or find cached) the Kubernetes test-bed binaries: hack/k8s-testenv.sh
	bash hack/k8s-testenv.sh

testbed-smoke: testbed setup ## start the test-bed control plane once, print its start-up seconds, stop it
	$(PY) -m tests.k8s.testbed

"""The kopf operator that reconciles FingerprintDB resources (imported as ``citywok_operator``).

Pure logic, tested without a cluster: ``spec`` (spec dict -> typed Spec), ``desired`` (Spec + version ->
child objects), ``status`` (pods -> what is served, status assembly), ``rollout`` (progress, completion,
deadline, rollback). I/O at the edges: ``kube`` (API calls), ``reconcile`` (one pass), ``handlers``
(kopf wiring), ``metrics``, ``cli``. ``rbac.yaml`` and ``peering.yaml`` are the operator's own
cluster objects, for the Helm chart.
"""

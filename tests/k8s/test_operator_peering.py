"""kopf peering: with operator/peering.yaml applied, only the operator with the highest priority works."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.test_operator import CRD, REPO, Cluster, Operator, available, fdb, wait_for

pytestmark = pytest.mark.k8s


def test_only_the_highest_priority_operator_is_active(k8s: Any, tmp_path: Path) -> None:
    k8s.kubectl("apply", "--server-side", "-f", str(CRD), "-f", str(REPO / "operator" / "peering-crds.yaml"))
    k8s.kubectl("wait", "--for=condition=Established", "crd/fingerprintdbs.citywok.io",
                "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    k8s.kubectl("apply", "--server-side", "-f", str(REPO / "operator" / "peering.yaml"))
    low = Operator(k8s, tmp_path / "low.log", ("--peering", "citywok", "--priority", "10"))
    high = Operator(k8s, tmp_path / "high.log",
                    ("--peering", "citywok", "--priority", "20", "--log-format", "json"))
    ns = f"t-{uuid.uuid4().hex[:8]}"
    k8s.kubectl("create", "namespace", ns)
    cluster = Cluster(k8s, low, ns)
    try:
        low.start()
        cluster.apply(fdb("db", replicas=1))
        cluster.serve("db", "v1", 1)
        cluster.wait_status("db", "Available v1 by the low-priority operator", available("v1"))

        high.start()
        wait_for(lambda: "Pausing operations in favour of" in low.tail(200), 60, "low pauses", low)
        assert "Pausing operations" not in high.tail(200)
        cluster.op = high
        cluster.patch_spec("db", version="v2")
        st = cluster.wait_status("db", "rollout by the high-priority operator",
                                 lambda st: st.get("targetVersion") == "v2")
        assert st["currentVersion"] == "v1"

        high.stop()
        lines = [json.loads(ln) for ln in high.log.read_text().splitlines() if ln.startswith("{")]
        assert any(ln.get("k8s", {}).get("name") == "db" and "RolloutStarted" in ln["message"]
                   for ln in lines), "structured log lines name the resource"
        cluster.op = low
        wait_for(lambda: "Resuming operations" in low.tail(200), 90, "low resumes", low)
        (pod,) = cluster.pods("db")
        cluster.report(pod["metadata"]["name"], served="v2")
        cluster.wait_status("db", "Available v2 by the low-priority operator again", available("v2"))
    finally:
        high.stop()
        low.stop()
        k8s.kubectl("delete", "namespace", ns, "--wait=false", check=False)

"""Pod dicts -> what is served; conditions keep their transition time."""

from __future__ import annotations

from datetime import UTC, datetime

from citywok.operator.status import merge_condition, observe, status_changed

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def pod(name: str, ready: bool, served: str | None = None, error: str | None = None,
        deleting: bool = False) -> dict:
    ann = {}
    if served:
        ann["citywok.io/served-version"] = served
    if error:
        ann["citywok.io/fetch-error"] = error
    meta = {"name": name, "annotations": ann}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T11:59:00Z"
    return {"metadata": meta,
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_served_versions_count_only_ready_live_pods() -> None:
    obs = observe([pod("a", True, "v1"), pod("b", True, "v2"), pod("c", False, "v2"),
                   pod("d", True, "v2", deleting=True), pod("e", True), {"metadata": {"name": "f"}}])
    assert obs.served_versions() == {"v1": 1, "v2": 1}
    assert [p.name for p in obs.ready] == ["a", "b", "e"]


def test_errors_name_the_pod() -> None:
    obs = observe([pod("a", True, "v1", error="checksum mismatch"), pod("b", True, "v2", error="stale")])
    assert obs.errors("v2", restart=False) == ["a: checksum mismatch"]


def test_condition_keeps_transition_time_while_status_holds() -> None:
    old = [{"type": "Available", "status": "True", "reason": "A", "message": "m",
            "lastTransitionTime": "2025-12-31T00:00:00Z"}]
    same = merge_condition(old, "Available", "True", "B", "other", NOW, 3)
    assert same["lastTransitionTime"] == "2025-12-31T00:00:00Z" and same["reason"] == "B"
    assert same["observedGeneration"] == 3
    flipped = merge_condition(old, "Available", "False", "B", "m", NOW, 3)
    assert flipped["lastTransitionTime"] == "2026-01-01T12:00:00Z"


def test_status_changed() -> None:
    assert not status_changed({"phase": "Available"}, {"phase": "Available", "failedVersion": None})
    assert status_changed({"phase": "Available"}, {"phase": "Degraded"})


def test_build_status_counts_and_removes_vanished_versions() -> None:
    from citywok.operator.status import build

    old = {"servedVersions": {"v1": 2, "v0": 1}, "conditions": []}
    obs = observe([pod("a", True, "v1"), pod("b", True, "v2"), pod("c", False)])
    new = build(old, record={"targetVersion": "v2"}, phase="Progressing",
                conditions={"Available": ("True", "PodsServing", "m"), "Progressing": ("True", "R", "m"),
                            "Degraded": ("False", "AsExpected", "m")},
                obs=obs, target="v2", generation=4, now=NOW)
    assert new["servedVersions"] == {"v0": None, "v1": 1, "v2": 1}
    assert (new["replicas"], new["readyReplicas"], new["updatedReplicas"]) == (3, 2, 1)
    assert [c["type"] for c in new["conditions"]] == ["Available", "Progressing", "Degraded"]
    assert new["observedGeneration"] == 4 and new["targetVersion"] == "v2"
    assert status_changed(old, new)

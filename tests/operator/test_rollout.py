"""Rollout decisions: start, progress, completion, fetch failure, deadline, rollback, resume."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from citywok.operator.rollout import Intent, Record, decide
from citywok.operator.status import Observation, PodView

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def pods(*served: str | None, ready: bool = True, error: str | None = None,
         template: str | None = None) -> Observation:
    return Observation(tuple(PodView(f"p{i}", ready, False, s, error, template)
                             for i, s in enumerate(served)))


def steady(version: str = "v1") -> Record:
    return Record(target=version, current=version, last_good=version, started=T0 - timedelta(hours=1))


def test_first_version_starts_a_rollout_then_completes() -> None:
    intent = Intent("v1", replicas=2)
    d = decide(intent, Record(), pods(None, None, ready=False), T0)
    assert d.version == "v1" and d.phase == "Progressing"
    assert d.record.started == T0 and d.record.current is None
    assert [e.reason for e in d.events] == ["RolloutStarted"]
    assert d.available.status == "False" and d.progressing.status == "True"

    d2 = decide(intent, d.record, pods("v1", "v1"), T0 + timedelta(seconds=30))
    assert d2.phase == "Available"
    assert d2.record.current == "v1" and d2.record.last_good == "v1"
    assert [e.reason for e in d2.events] == ["RolloutComplete"]
    assert d2.rollout_seconds == 30 and d2.outcome == "complete"
    assert (d2.available.status, d2.progressing.status, d2.degraded.status) == ("True", "False", "False")


def test_complete_is_idempotent() -> None:
    intent = Intent("v1", replicas=2)
    d = decide(intent, steady(), pods("v1", "v1"), T0)
    assert d.phase == "Available" and d.events == () and d.rollout_seconds is None
    assert d.record == steady()


def test_new_version_is_not_current_until_every_ready_pod_serves_it() -> None:
    intent = Intent("v2", replicas=3)
    d = decide(intent, steady(), pods("v1", "v1", "v1"), T0)
    assert d.version == "v2" and d.record.current == "v1" and d.phase == "Progressing"
    assert d.events[0].reason == "RolloutStarted" and "was v1" in d.events[0].message
    d = decide(intent, d.record, pods("v2", "v2", "v1"), T0 + timedelta(seconds=5))
    assert d.record.current == "v1" and d.phase == "Progressing"
    assert "2/3 ready pods serve v2" in d.progressing.message
    assert d.requeue_after is not None and 595 <= d.requeue_after <= 600
    d = decide(intent, d.record, pods("v2", "v2", "v2"), T0 + timedelta(seconds=9))
    assert d.record.current == "v2" and d.record.last_good == "v2" and d.phase == "Available"


def test_fewer_ready_pods_than_replicas_is_not_complete() -> None:
    d = decide(Intent("v2", replicas=3), steady(), pods("v2", "v2"), T0)
    assert d.record.current == "v1" and d.phase == "Progressing"


def test_fetch_error_rolls_back_to_last_good_with_events() -> None:
    intent = Intent("v2", replicas=2)
    d = decide(intent, steady(), pods("v1", "v1"), T0)
    d = decide(intent, d.record, pods("v1", "v1", error="sha256 mismatch"), T0 + timedelta(seconds=3))
    assert d.version == "v1", "children go back to the last good version"
    assert d.record.failed == "v2" and d.record.current == "v1"
    assert d.phase == "Degraded" and d.degraded.status == "True" and d.degraded.reason == "RolledBack"
    assert "sha256 mismatch" in d.degraded.message
    assert [e.reason for e in d.events] == ["FetchFailed", "RolledBack"]
    assert all(e.type == "Warning" for e in d.events)
    assert d.outcome == "rolled_back"
    assert d.available.status == "True", "the old version keeps serving"

    # Next reconciles: stays rolled back while spec.version still names the failed version.
    again = decide(intent, d.record, pods("v1", "v1"), T0 + timedelta(seconds=10))
    assert again.version == "v1" and again.phase == "Degraded" and again.events == ()
    assert again.degraded.reason == "RolledBack" and "sha256 mismatch" in again.degraded.message
    assert again.progressing.status == "False"


def test_rolled_back_state_survives_a_status_round_trip() -> None:
    intent = Intent("v2", replicas=1)
    d = decide(intent, steady(), pods("v1"), T0)
    d = decide(intent, d.record, pods("v1", error="no such key"), T0)
    status = {**d.record.to_status(), "conditions": [
        {"type": "Degraded", "status": d.degraded.status, "reason": d.degraded.reason,
         "message": d.degraded.message}]}
    rec = Record.from_status(status)
    assert rec == d.record
    again = decide(intent, rec, pods("v1"), T0 + timedelta(minutes=1))
    assert again.version == "v1" and again.events == ()


def test_deadline_exceeded_rolls_back() -> None:
    intent = Intent("v2", replicas=2, deadline_seconds=60)
    d = decide(intent, steady(), pods("v1", "v1"), T0)
    d = decide(intent, d.record, pods("v2", "v1"), T0 + timedelta(seconds=59))
    assert d.phase == "Progressing"
    d = decide(intent, d.record, pods("v2", "v1"), T0 + timedelta(seconds=61))
    assert d.version == "v1" and d.degraded.reason == "RolledBack"
    assert [e.reason for e in d.events] == ["ProgressDeadlineExceeded", "RolledBack"]
    assert "within 60s" in d.degraded.message


def test_failure_without_auto_rollback_keeps_target_and_reports_once() -> None:
    intent = Intent("v2", replicas=2, auto_rollback=False)
    d = decide(intent, steady(), pods("v1", "v1"), T0)
    d = decide(intent, d.record, pods("v1", "v1", error="bad archive"), T0 + timedelta(seconds=1))
    assert d.version == "v2" and d.phase == "Degraded" and d.degraded.reason == "FetchFailed"
    assert "autoRollback is off" in d.degraded.message
    assert d.record.current == "v1" and d.record.failed == "v2"
    assert [e.reason for e in d.events] == ["FetchFailed"]
    d = decide(intent, d.record, pods("v1", "v1", error="bad archive"), T0 + timedelta(seconds=2))
    assert d.events == () and d.phase == "Degraded"
    # The bucket is fixed and the sidecars succeed: the failure clears.
    d = decide(intent, d.record, pods("v2", "v2"), T0 + timedelta(seconds=3))
    assert d.phase == "Available" and d.record.current == "v2" and d.record.failed is None
    assert [e.reason for e in d.events] == ["RolloutComplete"]


def test_first_version_failing_has_nothing_to_roll_back_to() -> None:
    d = decide(Intent("v1", replicas=1), Record(), pods(None, ready=False, error="403 Forbidden"), T0)
    assert d.phase == "Degraded" and d.version == "v1"
    assert "no last good version" in d.degraded.message


def test_new_version_after_rollback_starts_fresh() -> None:
    intent = Intent("v2", replicas=1)
    d = decide(intent, steady(), pods("v1"), T0)
    d = decide(intent, d.record, pods("v1", error="boom"), T0)
    d = decide(Intent("v3", replicas=1), d.record, pods("v1"), T0 + timedelta(seconds=5))
    assert d.version == "v3" and d.record.failed is None and d.phase == "Progressing"
    assert d.record.started == T0 + timedelta(seconds=5)


def test_spec_back_to_last_good_clears_degraded() -> None:
    d = decide(Intent("v2", replicas=1), steady(), pods("v1"), T0)
    d = decide(Intent("v2", replicas=1), d.record, pods("v1", error="boom"), T0)
    d = decide(Intent("v1", replicas=1), d.record, pods("v1"), T0 + timedelta(seconds=5))
    assert d.phase == "Available" and d.record.failed is None and d.degraded.status == "False"


def test_stale_error_on_a_pod_already_serving_the_target_is_ignored() -> None:
    d = decide(Intent("v2", replicas=1), steady(), pods("v2", error="old failure"), T0)
    assert d.phase == "Available" and d.record.current == "v2"


def test_restart_ignores_errors_of_pods_from_older_templates() -> None:
    intent = Intent("v2", replicas=2, strategy="Restart")
    d = decide(intent, steady(), pods("v1", "v1", error="old", template="v1"), T0)
    assert d.phase == "Progressing"
    d = decide(intent, d.record, pods("v1", "v1", error="new", template="v2"), T0)
    assert d.degraded.reason == "RolledBack"


def test_missing_pod_in_steady_state_is_not_a_rollout_failure() -> None:
    d = decide(Intent("v1", replicas=3), steady(), pods("v1", "v1"), T0 + timedelta(days=1))
    assert d.phase == "Available" and d.degraded.status == "False" and d.events == ()
    d = decide(Intent("v1", replicas=3), steady(), pods(None, ready=False), T0 + timedelta(days=1))
    assert d.phase == "Progressing" and d.available.status == "False"


def test_scaled_down() -> None:
    d = decide(Intent("v2", replicas=0), steady(), pods(), T0)
    assert d.phase == "ScaledDown" and d.record.current == "v1" and d.available.reason == "ScaledDown"


def test_operator_restart_mid_rollout_resumes_with_the_original_start_time() -> None:
    intent = Intent("v2", replicas=2, deadline_seconds=60)
    d = decide(intent, steady(), pods("v1", "v1"), T0)
    rec = Record.from_status(d.record.to_status())
    assert rec.started == T0
    d = decide(intent, rec, pods("v2", "v1"), T0 + timedelta(seconds=30))
    assert d.events == () and d.phase == "Progressing"
    d = decide(intent, d.record, pods("v2", "v2"), T0 + timedelta(seconds=40))
    assert d.rollout_seconds == 40

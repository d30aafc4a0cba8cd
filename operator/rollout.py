"""Rollout decisions: given what the spec asks, what the status remembers and what the pods report,
which version the pods should be steered to, and what the resource should say.

Three situations, all recomputed from scratch on every reconcile (level-based, so an operator restart
resumes where the status left off):

* rolling out: ``target == spec.version``; complete once every ready pod serves it;
* failed: the target reported fetch errors or missed ``progressDeadlineSeconds``. Without autoRollback
  (or with no last good version) the target stays and the old version keeps serving;
* rolled back: ``target == lastGoodVersion`` while ``failedVersion == spec.version``. It stays so until
  the spec names another version.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from citywok.operator.status import Observation, condition, format_time, parse_time

MAX_MESSAGE = 600


@dataclass(frozen=True)
class Intent:
    """The part of the spec that drives a rollout."""

    version: str
    replicas: int
    strategy: str = "InPlace"
    deadline_seconds: int = 600
    auto_rollback: bool = True


@dataclass(frozen=True)
class Record:
    """What the status remembers between reconciles."""

    target: str | None = None
    current: str | None = None
    last_good: str | None = None
    failed: str | None = None
    started: datetime | None = None
    failure: str | None = None  # the Degraded message of the failure, kept across a rollback

    @classmethod
    def from_status(cls, status: dict[str, Any] | None) -> Record:
        status = status or {}
        degraded = condition(status.get("conditions"), "Degraded") or {}
        failed = status.get("failedVersion") or None
        return cls(
            target=status.get("targetVersion") or None,
            current=status.get("currentVersion") or None,
            last_good=status.get("lastGoodVersion") or None,
            failed=failed,
            started=parse_time(status.get("rolloutStartTime")),
            failure=degraded.get("message") if failed and degraded.get("status") == "True" else None,
        )

    def to_status(self) -> dict[str, Any]:
        """Fields for a merge patch of ``status`` (None removes a field)."""
        return {"targetVersion": self.target, "currentVersion": self.current,
                "lastGoodVersion": self.last_good, "failedVersion": self.failed,
                "rolloutStartTime": format_time(self.started) if self.started else None}


@dataclass(frozen=True)
class Cond:
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    record: Record
    phase: str
    available: Cond
    progressing: Cond
    degraded: Cond
    events: tuple[Event, ...] = ()
    rollout_seconds: float | None = None  # set on the reconcile that saw a rollout end
    outcome: str | None = None  # complete | failed | rolled_back, with rollout_seconds
    requeue_after: float | None = None  # wake up by then to check the deadline

    @property
    def version(self) -> str:
        """The version the children carry (ConfigMap / template)."""
        assert self.record.target is not None
        return self.record.target


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _serving(obs: Observation) -> str:
    served = obs.served_versions()
    return ", ".join(f"{v}={n}" for v, n in served.items()) or "nothing"


def _available(intent: Intent, obs: Observation) -> Cond:
    if intent.replicas == 0:
        return Cond("False", "ScaledDown", "spec.replicas is 0")
    serving = sum(obs.served_versions().values())
    msg = f"{len(obs.ready)}/{intent.replicas} pods ready, serving {_serving(obs)}"
    if serving:
        return Cond("True", "PodsServing", msg)
    return Cond("False", "NoPodServing", msg)


def start(intent: Intent, rec: Record, now: datetime) -> tuple[Record, list[Event]]:
    """Begin a rollout when the spec names a version that is neither the target nor a rolled-back failure."""
    if rec.failed and rec.failed != intent.version:
        rec = replace(rec, failed=None, failure=None)
    rolled_back = rec.failed == intent.version and rec.target != intent.version
    if rolled_back or rec.target == intent.version:
        return rec, []
    if rec.target is None:
        msg = f"rolling out {intent.version}"
    else:
        msg = f"rolling out {intent.version} (was {rec.target}, serving {rec.current or 'nothing'})"
    return replace(rec, target=intent.version, started=now), [Event("Normal", "RolloutStarted", msg)]


def _failure(intent: Intent, rec: Record, obs: Observation, now: datetime) -> tuple[str, str] | None:
    """(reason, message) when the target cannot become served, else None."""
    assert rec.target is not None
    errors = obs.errors(rec.target, intent.strategy == "Restart")
    if errors:
        return "FetchFailed", _clip(f"version {rec.target} failed: " + "; ".join(errors))
    if rec.started and (now - rec.started).total_seconds() > intent.deadline_seconds:
        n = obs.served_versions().get(rec.target, 0)
        return "ProgressDeadlineExceeded", (
            f"version {rec.target} not served by all ready pods within {intent.deadline_seconds}s "
            f"({n}/{intent.replicas} serve it; serving {_serving(obs)})")
    return None


def _steady(rec: Record, available: Cond, progress: str, events: list[Event]) -> Decision:
    """The target was served by every ready pod before: missing pods are capacity, not a rollout."""
    if available.status == "True":
        return Decision(rec, "Available", available, Cond("False", "RolloutComplete", progress),
                        Cond("False", "AsExpected", "the target version is served"), tuple(events))
    return Decision(rec, "Progressing", available, Cond("True", "PodsStarting", progress),
                    Cond("False", "AsExpected", "no failure reported"), tuple(events))


def decide(intent: Intent, rec: Record, obs: Observation, now: datetime) -> Decision:
    """The whole rollout step: pure, so every path (deadline, rollback, resume) is unit-tested."""
    rec, events = start(intent, rec, now)
    assert rec.target is not None
    available = _available(intent, obs)
    rolled_back = rec.failed == intent.version and rec.target != intent.version
    if intent.replicas == 0:
        return Decision(rec, "ScaledDown", available, Cond("False", "ScaledDown", "spec.replicas is 0"),
                        Cond("False", "ScaledDown", "no pods to serve"), tuple(events))

    ready = obs.ready
    serving_target = obs.served_versions().get(rec.target, 0)
    elapsed = (now - rec.started).total_seconds() if rec.started else None
    recovered = rec.failed == rec.target  # failed without rollback, then served after all
    if len(ready) >= intent.replicas and serving_target == len(ready):
        return _completed(rec, available, events, len(ready), elapsed, rolled_back, recovered)

    progress = f"{serving_target}/{intent.replicas} ready pods serve {rec.target}; serving {_serving(obs)}"
    if rolled_back:
        msg = rec.failure or f"version {rec.failed} failed; rolling back to {rec.target}"
        return Decision(rec, "Degraded", available, Cond("True", "RollingBack", progress),
                        Cond("True", "RolledBack", msg), tuple(events))
    if rec.current == rec.target and not recovered:
        return _steady(rec, available, progress, events)

    failure = _failure(intent, rec, obs, now)
    if failure is None:
        rec = replace(rec, failed=None, failure=None) if recovered else rec
        requeue = intent.deadline_seconds - elapsed if elapsed is not None else None
        return Decision(rec, "Progressing", available, Cond("True", "RollingOut", progress),
                        Cond("False", "AsExpected", "no failure reported"), tuple(events),
                        requeue_after=max(requeue, 0.0) + 1.0 if requeue is not None else None)
    return _failed(intent, rec, available, progress, events, failure, elapsed, now)


def _completed(rec: Record, available: Cond, events: list[Event], ready: int, elapsed: float | None,
               rolled_back: bool, recovered: bool) -> Decision:
    """Every ready pod serves the target: it becomes current and last good (a rollback stays Degraded)."""
    seconds = outcome = None
    if rec.current != rec.target or recovered:
        events.append(Event("Normal", "RolloutComplete", f"{rec.target} is served by all {ready} ready pods"))
        seconds, outcome = elapsed, ("rolled_back" if rolled_back else "complete")
    rec = replace(rec, current=rec.target, last_good=rec.target)
    if rolled_back:
        msg = rec.failure or f"version {rec.failed} failed; rolled back to {rec.target}"
        return Decision(rec, "Degraded", available,
                        Cond("False", "RolledBack", f"serving {rec.target} after rolling back"),
                        Cond("True", "RolledBack", msg), tuple(events), seconds, outcome)
    rec = replace(rec, failed=None, failure=None)
    return Decision(rec, "Available", available,
                    Cond("False", "RolloutComplete", f"{rec.target} is served by all ready pods"),
                    Cond("False", "AsExpected", "the target version is served"),
                    tuple(events), seconds, outcome)


def _failed(intent: Intent, rec: Record, available: Cond, progress: str, events: list[Event],
            failure: tuple[str, str], elapsed: float | None, now: datetime) -> Decision:
    """The target cannot become served: roll back to the last good version if allowed, else say why not."""
    reason, message = failure
    first = rec.failed != rec.target
    if first:
        events.append(Event("Warning", reason, message))
    if intent.auto_rollback and rec.last_good and rec.last_good != rec.target:
        events.append(Event("Warning", "RolledBack",
                            f"rolled back from {rec.target} to {rec.last_good}: {reason}"))
        rec = replace(rec, failed=rec.target, target=rec.last_good, started=now,
                      failure=_clip(f"{message}; rolled back to {rec.last_good}"))
        return Decision(rec, "Degraded", available, Cond("True", "RollingBack", progress),
                        Cond("True", "RolledBack", rec.failure or message), tuple(events),
                        elapsed, "rolled_back")
    why = "autoRollback is off" if not intent.auto_rollback else "there is no last good version"
    rec = replace(rec, failed=rec.target, failure=message)
    return Decision(rec, "Degraded", available, Cond("False", reason, progress),
                    Cond("True", reason, _clip(f"{message}; not rolled back: {why}")), tuple(events),
                    elapsed if first else None, "failed" if first else None)

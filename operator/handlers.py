"""kopf handlers. Each stays small: the work is in :mod:`citywok.operator.reconcile`.

One daemon per FingerprintDB is the only writer for that resource, so reconciles never race. Watch
events on the resource and on anything it owns only wake that daemon; a periodic resync catches what a
watch may have missed (and reverts hand edits of children that are not watched closely enough).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf
from citywok.operator import metrics
from citywok.operator.desired import GROUP, INSTANCE_LABEL, MANAGED_BY, PLURAL
from citywok.operator.reconcile import reconcile

VERSION = "v1alpha1"
FINALIZER = f"{GROUP}/operator"
RETRY_CAP = 60.0  # seconds: the longest pause between failed reconciles
# The children the operator applies (and pods, whose annotations carry what each one serves).
CHILD_RESOURCES = [
    ("v1", "pods"), ("v1", "configmaps"), ("v1", "services"), ("v1", "serviceaccounts"),
    ("apps", "v1", "deployments"), ("policy", "v1", "poddisruptionbudgets"),
    ("rbac.authorization.k8s.io", "v1", "roles"), ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
]
CHILD_LABELS = {INSTANCE_LABEL: kopf.PRESENT, "app.kubernetes.io/managed-by": MANAGED_BY}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=f"kopf.{GROUP}")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=f"kopf.{GROUP}")
    settings.posting.reporting_component = MANAGED_BY
    settings.peering.stealth = True
    for resource in CHILD_RESOURCES:  # watch only what this operator manages, filtered by the server
        settings.watching.label_selectors[resource] = f"app.kubernetes.io/managed-by={MANAGED_BY}"
    memo.setdefault("wakers", {})  # shared: kopf gives each resource a shallow copy of this memo
    if memo.metrics_port:
        metrics.serve(memo.metrics_port)
        logger.info("metrics on :%d/metrics", memo.metrics_port)


def wake(memo: kopf.Memo, namespace: str | None, name: str | None) -> None:
    """Wake the daemon of one FingerprintDB (called on the event loop: asyncio.Event is not thread-safe)."""
    waker = memo.get("wakers", {}).get((namespace, name))
    if waker is not None:
        waker.set()


def forget(memo: kopf.Memo, namespace: str, name: str) -> None:
    """Drop a FingerprintDB's waker and metric series."""
    memo.get("wakers", {}).pop((namespace, name), None)
    metrics.forget(namespace, name)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def fingerprintdb_changed(namespace: str, name: str, memo: kopf.Memo, event: kopf.RawEvent,
                                **_: Any) -> None:
    if event.get("type") == "DELETED":  # also when its daemon was between runs, waiting out a failure
        forget(memo, namespace, name)
        return
    wake(memo, namespace, name)


async def _child_changed(namespace: str, labels: dict[str, str], memo: kopf.Memo, **_: Any) -> None:
    wake(memo, namespace, labels.get(INSTANCE_LABEL))


for _resource in CHILD_RESOURCES:
    kopf.on.event(*_resource, labels=CHILD_LABELS, id=f"child-{_resource[-1]}")(_child_changed)


def retry_delay(failures: int) -> float:
    """Seconds kopf waits before running the daemon again after ``failures`` failed reconciles in a row."""
    return min(2.0 ** failures, RETRY_CAP)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0, retries=None)
async def reconciler(namespace: str, name: str, memo: kopf.Memo, logger: logging.Logger, retry: int,
                     **_: Any) -> None:
    """Reconcile now, then again on every wake-up, at a rollout deadline, or at the resync interval.

    A failed reconcile ends this run with kopf.TemporaryError, and kopf runs the daemon again after the
    delay; ``retry`` is kopf's count of the runs that failed so far, all in a row until one reconciles.
    """
    key = (namespace, name)
    waker = memo.wakers.setdefault(key, asyncio.Event())
    failures = retry
    try:
        while True:
            waker.clear()
            try:
                outcome = await asyncio.to_thread(reconcile, memo.kube, namespace, name, memo.options)
            except Exception as e:
                metrics.RECONCILES.labels(namespace, name, "error").inc()
                metrics.ERRORS.labels(namespace, name, type(e).__name__).inc()
                delay = retry_delay(failures + 1)
                raise kopf.TemporaryError(f"reconcile failed (retry in {delay:.0f}s): {e}", delay=delay) from e
            failures = 0
            for ev in outcome.events:
                if outcome.body is not None:
                    kopf.event(outcome.body, type=ev.type, reason=ev.reason, message=ev.message)
            delay = min(memo.resync, outcome.requeue_after or memo.resync)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), timeout=delay)
            await asyncio.sleep(memo.debounce)  # fold a burst of watch events into one reconcile
    except kopf.TemporaryError:
        raise  # kopf runs the daemon again: the resource's waker and series stay
    except BaseException:  # the resource is gone (or no longer ours to reconcile): so are its series
        forget(memo, namespace, name)
        raise

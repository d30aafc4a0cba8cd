"""``citywok_build_info{version, revision}`` on every component, and the exposition settings they share.

Which code a pod runs is the first question when one pod misbehaves: the matcher, the fetcher sidecar
and the operator all export the same gauge (value 1). ``revision`` comes from ``CITYWOK_REVISION``,
which the image build sets from its ``REVISION`` build argument (the commit); "unknown" otherwise.

Importing this module turns off prometheus_client's ``*_created`` series for the whole process: they
double the series count and no dashboard or alert of ours reads them.
"""

from __future__ import annotations

from weakref import WeakSet

from prometheus_client import REGISTRY, CollectorRegistry, Gauge, disable_created_metrics

from citywok import __version__
from citywok.settings import REVISION_ENV as REVISION_ENV  # re-exported: the variable's name
from citywok.settings import revision

METRIC = "citywok_build_info"

disable_created_metrics()
_registered: WeakSet[CollectorRegistry] = WeakSet()


def labels() -> dict[str, str]:
    """The gauge's labels for this process."""
    return {"version": __version__, "revision": revision()}


def register(registry: CollectorRegistry = REGISTRY) -> None:
    """Add ``citywok_build_info`` to ``registry`` once (the fetcher and operator share the default one)."""
    if registry in _registered:
        return
    gauge = Gauge(METRIC, "The CityWok version and source revision this process runs (value 1)",
                  ["version", "revision"], registry=registry)
    gauge.labels(**labels()).set(1)
    _registered.add(registry)

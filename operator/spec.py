"""The FingerprintDB spec read into a typed value, with the CRD's defaults applied again.

The API server already validates and defaults through the CRD schema; reading the spec once here means
every other module works with plain attributes and a resource created before a default existed still
gets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from citywok.operator.autoscaling import Autoscaling
from citywok.operator.podtemplate import (
    FETCHER_RESERVED,
    MATCHER_RESERVED,
    ExtraEnv,
    PodTemplate,
    PodTemplateError,
    parse_env,
    parse_pod_template,
)

from citywok import layout
from citywok.errors import CityWokError

STRATEGIES = ("InPlace", "Restart")
STORAGE_TYPES = ("EmptyDir", "PersistentVolumeClaim")
# Children are named "<name>-fetcher" etc.; a Service name is a DNS-1035 label of at most 63 characters.
MAX_NAME = 50
DEFAULT_IMAGE = "ghcr.io/citywok/citywok:latest"


class SpecError(CityWokError, ValueError):
    """A spec the schema let through but the operator cannot act on (reported in the status)."""

    code = "bad_spec"


@dataclass(frozen=True)
class Source:
    bucket: str
    prefix: str = "fingerprints"
    endpoint: str | None = None
    region: str | None = None
    secret_name: str | None = None
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"


@dataclass(frozen=True)
class Container:
    image: str
    pull_policy: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    extra: ExtraEnv = field(default_factory=ExtraEnv)  # env / envFrom from the spec


@dataclass(frozen=True)
class Storage:
    type: str = "EmptyDir"
    size: str | None = None
    storage_class: str | None = None
    claim_name: str | None = None


@dataclass(frozen=True)
class Rollout:
    strategy: str = "InPlace"
    progress_deadline_seconds: int = 600
    auto_rollback: bool = True


@dataclass(frozen=True)
class Spec:
    name: str
    namespace: str
    version: str
    source: Source
    replicas: int = 2
    seasons: tuple[int, ...] = ()
    max_seasons: int | None = None
    matcher: Container = field(default_factory=lambda: Container(DEFAULT_IMAGE))
    fetcher: Container = field(default_factory=lambda: Container(DEFAULT_IMAGE))
    storage: Storage = field(default_factory=Storage)
    rollout: Rollout = field(default_factory=Rollout)
    autoscaling: Autoscaling | None = None  # set: an HPA owns the replica count, spec.replicas waits
    pod: PodTemplate = field(default_factory=PodTemplate)


def _container(raw: dict[str, Any] | None, default_image: str, where: str,
               reserved: frozenset[str]) -> Container:
    raw = raw or {}
    try:
        extra = parse_env(raw, where, reserved)
    except PodTemplateError as e:
        raise SpecError(str(e)) from None
    return Container(
        image=raw.get("image") or default_image,
        pull_policy=raw.get("imagePullPolicy"),
        resources=dict(raw.get("resources") or {}),
        extra=extra,
    )


def _number(raw: dict[str, Any], key: str) -> Any:
    value = raw.get(key)
    return None if isinstance(value, bool) else value


def parse_autoscaling(raw: dict[str, Any] | None, matcher: Container) -> Autoscaling | None:
    """``spec.autoscaling`` (None when absent); the CRD checks the same, this catches older schemas."""
    if raw is None:
        return None
    lo, hi = _number(raw, "minReplicas"), _number(raw, "maxReplicas")
    if not isinstance(lo, int) or lo < 1:
        raise SpecError(f"spec.autoscaling.minReplicas must be an integer >= 1, not {lo!r}")
    if not isinstance(hi, int) or hi < lo:
        raise SpecError(f"spec.autoscaling.maxReplicas must be an integer >= minReplicas ({lo}), not {hi!r}")
    target = raw.get("target") or {}
    cpu, rps = _number(target, "cpuUtilization"), _number(target, "requestsPerSecond")
    if (cpu is None) == (rps is None):
        raise SpecError("spec.autoscaling.target needs exactly one of cpuUtilization, requestsPerSecond")
    if cpu is not None:
        if not isinstance(cpu, int) or cpu < 1:
            raise SpecError(f"spec.autoscaling.target.cpuUtilization must be a percentage >= 1, not {cpu!r}")
        if "cpu" not in (matcher.resources.get("requests") or {}):
            raise SpecError("spec.autoscaling.target.cpuUtilization needs spec.matcher.resources.requests.cpu "
                            "(utilisation is a percentage of the request)")
        return Autoscaling(lo, hi, cpu_utilization=cpu)
    if not isinstance(rps, int | float) or rps <= 0:
        raise SpecError(f"spec.autoscaling.target.requestsPerSecond must be a number > 0, not {rps!r}")
    return Autoscaling(lo, hi, requests_per_second=float(rps))


def _storage(st: dict[str, Any]) -> Storage:
    storage = Storage(
        type=st.get("type") or "EmptyDir",
        size=str(st["size"]) if st.get("size") is not None else None,
        storage_class=st.get("storageClassName") or None,
        claim_name=st.get("claimName") or None,
    )
    if storage.type not in STORAGE_TYPES:
        raise SpecError(f"spec.storage.type must be one of {', '.join(STORAGE_TYPES)}")
    if storage.type == "PersistentVolumeClaim" and not storage.claim_name and not storage.size:
        raise SpecError("spec.storage: a PersistentVolumeClaim needs claimName or size")
    return storage


def _rollout(ro: dict[str, Any]) -> Rollout:
    rollout = Rollout(
        strategy=ro.get("strategy") or "InPlace",
        progress_deadline_seconds=int(ro.get("progressDeadlineSeconds") or 600),
        auto_rollback=bool(ro.get("autoRollback", True)),
    )
    if rollout.strategy not in STRATEGIES:
        raise SpecError(f"spec.rollout.strategy must be one of {', '.join(STRATEGIES)}")
    return rollout


def _pod_template(raw: dict[str, Any] | None) -> PodTemplate:
    try:
        return parse_pod_template(raw)
    except PodTemplateError as e:
        raise SpecError(str(e)) from None


def parse(name: str, namespace: str, spec: dict[str, Any], default_image: str = DEFAULT_IMAGE) -> Spec:
    """Read a FingerprintDB's ``spec`` dict; raise :class:`SpecError` with a one-line reason."""
    if len(name) > MAX_NAME:
        raise SpecError(f"name {name!r} is longer than {MAX_NAME} characters (children append suffixes)")
    version = spec.get("version")
    if not isinstance(version, str) or not layout.VERSION_RE.match(version) or version == "current":
        raise SpecError(f"spec.version {version!r} is not a valid version name")
    src = spec.get("source") or {}
    if not src.get("bucket"):
        raise SpecError("spec.source.bucket is required")
    secret = src.get("credentialsSecret") or {}
    source = Source(
        bucket=src["bucket"],
        prefix=src.get("prefix") or "fingerprints",
        endpoint=src.get("endpoint") or None,
        region=src.get("region") or None,
        secret_name=secret.get("name") or None,
        access_key_id_key=secret.get("accessKeyIdKey") or "AWS_ACCESS_KEY_ID",
        secret_access_key_key=secret.get("secretAccessKeyKey") or "AWS_SECRET_ACCESS_KEY",
    )
    seasons = tuple(sorted(set(spec.get("seasons") or ())))
    max_seasons = spec.get("maxSeasons")
    if seasons and max_seasons is not None:
        raise SpecError("set either spec.seasons or spec.maxSeasons, not both")
    replicas = spec.get("replicas", 2)
    if not isinstance(replicas, int) or replicas < 0:
        raise SpecError(f"spec.replicas must be an integer >= 0, not {replicas!r}")
    storage = _storage(spec.get("storage") or {})
    rollout = _rollout(spec.get("rollout") or {})
    matcher = _container(spec.get("matcher"), default_image, "spec.matcher", MATCHER_RESERVED)
    autoscaling = parse_autoscaling(spec.get("autoscaling"), matcher)
    return Spec(
        name=name,
        namespace=namespace,
        version=version,
        source=source,
        replicas=replicas,
        seasons=seasons,
        max_seasons=max_seasons,
        matcher=matcher,
        fetcher=_container(spec.get("fetcher"), matcher.image, "spec.fetcher", FETCHER_RESERVED),
        storage=storage,
        rollout=rollout,
        autoscaling=autoscaling,
        pod=_pod_template(spec.get("podTemplate")),
    )

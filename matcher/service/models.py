"""The shapes of the API's answers, as pydantic models: the handlers serialise through them and the
OpenAPI document is generated from them, so the two cannot drift apart.

The identify answer is the engine's own :class:`Identification` dataclass (the engine stays free of
pydantic), extended with what the HTTP layer adds; pydantic reads its fields, nested candidates included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from dataclasses import field as dc_field
from typing import Any, Literal

from citywok.matcher.engine.identify import Identification
from citywok.matcher.service.timeline import Stretch
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


@dataclass
class SourceInfo:
    """Where the clip came from; for a link, what yt-dlp reported about it (links.py)."""

    kind: Literal["upload", "url", "body"] = "upload"
    url: str | None = None
    title: str | None = None
    uploader: str | None = None
    webpage_url: str | None = None
    extractor: str | None = None
    duration: float | None = None
    start_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IdentifyAnswer(Identification):
    """An identification as the API sends it: the engine's answer plus this request's timings and source,
    and for audio longer than a clip its timeline (timeline.py)."""

    elapsed_ms: float = 0.0
    decode_ms: float = 0.0
    match_ms: float = 0.0
    source: SourceInfo = dc_field(default_factory=SourceInfo)
    cached: bool = False
    download_ms: float | None = None
    timeline: list[Stretch] | None = None
    timeline_text: str | None = None
    windows: int | None = None

    @classmethod
    def of(cls, result: Identification, **extra: Any) -> IdentifyAnswer:
        return cls(**{f.name: getattr(result, f.name) for f in fields(result)}, **extra)


IDENTIFY = TypeAdapter(IdentifyAnswer)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Error(Model):
    error: str = Field(description="a stable code, e.g. too_short", examples=["too_short"])
    message: str = Field(description="a sentence for people",
                         examples=["the clip has 0.40 s of audio; at least 1 s is needed"])


class IngestAnswer(Model):
    episode_id: str = Field(examples=["S01E02"])
    season: int = Field(ge=1, le=99, examples=[1])
    status: Literal["added", "replaced", "skipped"]
    seconds: float = Field(description="the episode's length", examples=[1320.5])
    hashes: int = Field(description="fingerprint hashes stored for it", examples=[112000])
    db_version: str = Field(examples=["v1"])


class Features(Model):
    audio: bool
    url_download: bool
    ingest: bool = Field(description="POST /api/v1/ingest is enabled (INGEST_TOKEN set)")


class ApiTest(Model):
    status: Literal["ok"]
    message: str = Field(examples=["CityWok API is running (Audio-Only)"])
    features: Features
    ready: bool
    db_version: str | None = Field(examples=["v1"])
    seasons: list[int] = Field(examples=[[1, 2]])
    episodes: int = Field(examples=[24])
    workers: int = Field(description="identify worker processes")
    failed_seasons: dict[str, str] = Field(description="seasons left out of the served version, and why")
    last_error: str | None = Field(description="the last failure to load or follow `current`")


class Health(Model):
    status: Literal["ok"]


class Ready(Model):
    status: Literal["ready"]
    db_version: str = Field(examples=["v1"])
    seasons: list[int] = Field(examples=[[1, 2]])
    failed_seasons: dict[str, str]
    last_error: str | None


class Stats(Model):
    version: str = Field(description="the fingerprint version served", examples=["v1"])
    seasons: int = Field(examples=[2])
    episodes: int = Field(examples=[24])
    hours: float = Field(description="hours of episode audio indexed", examples=[9.2])
    hashes: int = Field(description="distinct fingerprint hashes over all seasons", examples=[5100000])

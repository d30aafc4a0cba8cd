import os

import pytest

from citywok import layout


def test_flip_refuses_incomplete_and_flips_atomically(tmp_path):
    v1 = layout.version_dir(tmp_path, "v1")
    v1.mkdir(parents=True)
    with pytest.raises(layout.LayoutError, match="manifest"):
        layout.flip_current(tmp_path, "v1")
    assert layout.current_version(tmp_path) is None
    layout.write_manifest(v1, {"seasons": {}})
    layout.flip_current(tmp_path, "v1")
    assert layout.current_version(tmp_path) == "v1"
    v2 = layout.version_dir(tmp_path, "v2")
    v2.mkdir()
    layout.write_manifest(v2, {"seasons": {}})
    layout.flip_current(tmp_path, "v2")
    assert layout.current_dir(tmp_path) == v2
    assert sorted(p.name for p in layout.fingerprints_dir(tmp_path).iterdir()) == ["current", "v1", "v2"]


@pytest.mark.parametrize("bad", ["", "..", "current", "a/b", "../x", "-x"])
def test_version_names_cannot_escape(tmp_path, bad):
    with pytest.raises(layout.LayoutError):
        layout.version_dir(tmp_path, bad)


def test_bad_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(layout.LayoutError, match="not valid JSON"):
        layout.read_manifest(tmp_path)


def test_seasons_to_serve_from_seasons_and_max_seasons():
    from citywok import settings

    found = {1: "a", 2: "b", 3: "c", 5: "e"}
    assert layout.pick_seasons(found) == found
    assert layout.pick_seasons(found, max_seasons=2) == {1: "a", 2: "b"}
    assert layout.pick_seasons(found, only=(2, 5, 7)) == {2: "b", 5: "e"}
    assert layout.pick_seasons(found, max_seasons=1, only=(3, 5)) == {3: "c"}
    assert settings.load({"SEASONS": " 5, 2,2 "}).seasons == (2, 5)
    assert settings.load({}).seasons is None
    with pytest.raises(ValueError, match="season numbers"):
        settings.load({"SEASONS": "1,two"})


@pytest.mark.parametrize(("line", "cpus"), [("max 100000", None), ("100000 100000", 1), ("150000 100000", 2),
                                             ("50000 100000", 1), ("400000 100000\n", 4), ("garbage", None)])
def test_a_container_cpu_limit_caps_the_workers(line, cpus):
    from citywok.settings import cpu_budget, cpu_quota

    assert cpu_quota(line) == cpus
    assert 1 <= cpu_budget() <= (os.cpu_count() or 1)


# A manifest `citywok ingest` wrote before the fetcher's and the ingest's were one shape (volumes hold it).
OLD_INGEST = {
    "format_version": 1, "version": "v1", "params": {"sample_rate": 8000}, "params_digest": "58666fca8b0f3b02",
    "created": "2026-11-30T10:00:00Z",
    "seasons": {"02": {"season": 2, "lmdb": "season_02.lmdb", "hash_count": 120, "posting_count": 130,
                       "episodes": ["S02E01", "S02E02"], "titles": {"S02E01": "Pilot"}, "seconds": 80.0}},
}
# One the fetcher wrote from a bucket then (no titles, no seconds, no created).
OLD_FETCHED = {
    "format": "citywok-fingerprints", "format_version": 1, "version": "v2", "params": {}, "params_digest": "x",
    "seasons": {"01": {"season": 1, "lmdb": "season_01.lmdb", "archive": "season_01.lmdb.tar.zst", "bytes": 10,
                       "sha256": "a" * 64, "data_bytes": 20, "hash_count": 5, "posting_count": 6,
                       "episode_count": 1, "episodes": ["S01E01"]}},
}


def test_manifests_already_on_volumes_are_read_in_the_one_shape(tmp_path):
    import json

    for old in (OLD_INGEST, OLD_FETCHED):
        vdir = tmp_path / old["version"]
        vdir.mkdir()
        (vdir / layout.MANIFEST).write_text(json.dumps(old))
        m = layout.load_manifest(vdir)
        doc = layout.read_manifest(vdir)
        assert doc["format"] == layout.FORMAT and doc["version"] == old["version"]
        for key, s in old["seasons"].items():
            assert {k: doc["seasons"][key][k] for k in s} == s, "every field kept as it was"
        layout.write_manifest(vdir, doc)
        assert layout.read_manifest(vdir) == doc and layout.load_manifest(vdir) == m, "the shape is stable"
    ingest = layout.load_manifest(tmp_path / "v1").seasons[0]
    assert ingest.episode_count == 2 and ingest.archive == "" and ingest.titles == {"S02E01": "Pilot"}
    assert layout.load_manifest(tmp_path / "v1").shas() == {}
    assert layout.load_manifest(tmp_path / "v2").shas() == {1: "a" * 64}


def test_a_malformed_manifest_names_the_file_and_the_entry(tmp_path):
    import json

    cases = [({**OLD_INGEST, "format": "other"}, "not a CityWok fingerprints manifest"),
             ({**OLD_INGEST, "format_version": 2}, "manifest format 2"),
             ({**OLD_INGEST, "seasons": "x"}, "neither an object nor a list"),
             ({**OLD_INGEST, "seasons": {"01": {"season": 1}}}, "season entry 0 is malformed"),
             ({**OLD_INGEST, "seasons": [{"season": 1, "hash_count": 1}, {"season": 1, "hash_count": 2}]},
              "listed twice")]
    for doc, message in cases:
        (tmp_path / layout.MANIFEST).write_text(json.dumps(doc))
        with pytest.raises(layout.ManifestError, match=message) as got:
            layout.read_manifest(tmp_path)
        assert str(tmp_path / layout.MANIFEST) in str(got.value)

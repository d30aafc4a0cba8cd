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

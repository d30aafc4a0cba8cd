"""bench.probe's own logic: the overrides it applies and the clips it picks (no corpus needed)."""

from __future__ import annotations

import pytest
from citywok.matcher.engine.identify import DEFAULT_POLICY

from bench.probe import Case, chosen, policy_from


def test_overrides_reach_the_policy_and_its_grid_and_nothing_else() -> None:
    p = policy_from(["pitch_step=0.01", "coarse_fanout=2"], ["scale_min_score=18"])
    assert (p.grid.pitch_step, p.grid.coarse_fanout, p.scale_min_score) == (0.01, 2, 18)
    assert isinstance(p.grid.coarse_fanout, int) and p.grid.time_step == DEFAULT_POLICY.grid.time_step
    assert policy_from([], []) == DEFAULT_POLICY


@pytest.mark.parametrize("grid,policy", [(["pitch_stp=0.01"], []), ([], ["grid=1"]), ([], ["min_score"])])
def test_a_setting_that_does_not_exist_is_refused(grid: list[str], policy: list[str]) -> None:
    with pytest.raises(SystemExit, match="not a setting"):
        policy_from(grid, policy)


def test_each_row_gives_at_most_its_share_of_clips() -> None:
    names = ("pitch -3 st 5 s", "clean 5 s", "unindexed pitch -3 st 5 s", "unindexed 5 s")
    cases = [Case(f"c{k}", row, None if row.startswith("unindexed") else "S01E01", 1.0, 5.0)
             for k in range(5) for row in names]
    picked = list(chosen(cases, "pitch", 2, 3))
    assert [c.row for c in picked].count("pitch -3 st 5 s") == 2
    assert [c.row for c in picked].count("unindexed pitch -3 st 5 s") == 3
    assert [c.row for c in picked].count("unindexed 5 s") == 3  # music's one unindexed row comes with any rows
    assert not any(c.row == "clean 5 s" for c in picked)
    assert not any(c.truth is None for c in chosen(cases, "pitch", 2, 0))

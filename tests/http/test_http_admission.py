"""Admission control (pure logic): the count bound, the expected-wait bound, and slots given back."""

from __future__ import annotations

import pytest
from citywok.matcher.service.admission import Admission, Overloaded


def test_count_bound_and_slots_are_given_back() -> None:
    a = Admission(workers=2, queue=1)
    with a.slot(), a.slot(), a.slot():
        assert a.full
        with pytest.raises(Overloaded), a.slot():
            pass
    assert a.admitted == 0 and not a.full
    with pytest.raises(ValueError), a.slot():
        raise ValueError("a failing job")
    assert a.admitted == 0


def test_expected_wait_bound_follows_recent_job_times() -> None:
    a = Admission(workers=2, queue=10, max_wait=0.5)
    a.record(0.1)
    with a.slot(), a.slot():  # both workers busy: a third waits about one job time / 2 workers
        assert a.expected_wait() == pytest.approx(0.05)
        assert not a.full
        for _ in range(30):
            a.record(1.0)  # jobs got slow (a starved CPU)
        assert a.job_seconds > 0.95
        assert a.expected_wait() == pytest.approx(0.5, abs=0.01) and not a.full
        with a.slot():  # one waiting now: the next would wait about a whole job time
            assert a.expected_wait() > 0.9 and a.full
            with pytest.raises(Overloaded), a.slot():
                pass
    assert a.expected_wait() == 0 and not a.full  # a free worker: no wait, whatever the job time


def test_no_wait_bound_without_max_wait() -> None:
    a = Admission(workers=1, queue=3)
    a.record(100.0)
    with a.slot(), a.slot():
        assert not a.full

"""Accept/reject rules of the line controller, without a broker (the clock is passed in)."""

import uuid

import pytest
from pydantic import ValidationError

from controller.tracker import Outcome, PartTracker, RecentSet
from inspector.protocol.payloads import Result


def result(station="cam1", part_id="P1", verdict="pass", rid=None) -> Result:
    return Result.model_validate(
        {
            "id": rid or uuid.uuid4().hex,
            "seq": 1,
            "line": "line1",
            "station": station,
            "part_id": part_id,
            "verdict": verdict,
            "defect_score": 0.9 if verdict == "fail" else 0.1,
            "threshold": 0.5,
            "top_class": "good",
            "top_score": 0.9,
            "scores": {"good": 0.9},
            "model": {"name": "m", "version": "1", "sha256": "0" * 12},
            "captured_at": "2026-01-01T00:00:00Z",
            "capture_ts": 0.0,
            "inference_ms": 3.0,
        }
    )


def test_triggered_part_accepted_only_when_every_station_passed():
    t = PartTracker(deadline_s=2.0)
    t.expect("P1", ["cam1", "cam2"], now=0.0)
    assert t.on_result(result("cam1"), now=0.1) == (Outcome.PARTIAL, None)
    outcome, decision = t.on_result(result("cam2"), now=0.2)
    assert outcome == Outcome.DECIDED
    assert (decision.action, decision.reason, decision.part_id) == ("accept", "pass", "P1")
    assert decision.verdicts == {"cam1": "pass", "cam2": "pass"} and decision.wait_ms == pytest.approx(200.0)
    assert t.pending == 0


def test_one_failing_station_rejects_at_once_and_later_results_are_late():
    t = PartTracker(deadline_s=2.0)
    t.expect("P1", ["cam1", "cam2"], now=0.0)
    outcome, decision = t.on_result(result("cam1", verdict="fail"), now=0.1)
    assert (outcome, decision.action, decision.reason) == (Outcome.DECIDED, "reject", "fail")
    assert t.on_result(result("cam2"), now=0.2) == (Outcome.LATE, None)


def test_missing_result_is_rejected_at_the_deadline_and_not_before():
    t = PartTracker(deadline_s=2.0)
    t.expect("P1", ["cam1", "cam2"], now=10.0)
    t.on_result(result("cam1"), now=10.5)
    assert t.expire(now=11.9) == []
    [decision] = t.expire(now=12.0)
    assert (decision.action, decision.reason, decision.missing) == ("reject", "timeout", ["cam2"])
    assert decision.verdicts == {"cam1": "pass"}
    assert t.on_result(result("cam2"), now=12.5)[0] == Outcome.LATE


def test_duplicate_result_id_is_dropped():
    t = PartTracker(deadline_s=2.0)
    r = result(part_id=None, verdict="fail")
    assert t.on_result(r, now=0.0)[1].action == "reject"
    assert t.on_result(r, now=0.1) == (Outcome.DUPLICATE, None)


def test_untracked_results_are_decided_on_their_own():
    t = PartTracker(deadline_s=2.0)
    assert t.on_result(result(part_id=None, verdict="pass"), 0.0)[1].action == "accept"
    assert t.on_result(result(part_id="X9", verdict="fail"), 0.0)[1].action == "reject"
    # the same part id again (a second station's result for a part decided on its own) is late
    assert t.on_result(result(station="cam2", part_id="X9"), 0.0)[0] == Outcome.LATE


@pytest.mark.parametrize("review_action, action", [("reject", "reject"), ("accept", "accept")])
def test_review_verdict_follows_the_policy(review_action, action):
    t = PartTracker(deadline_s=2.0, review_action=review_action)
    decision = t.on_result(result(verdict="review"), 0.0)[1]
    assert (decision.action, decision.reason) == (action, "review")


def test_unknown_verdict_is_refused_by_the_contract():
    # A verdict outside the Verdict enum never reaches the tracker: the payload does not parse, so a
    # triggered part waiting for it is rejected at its deadline (test above) instead of being accepted.
    with pytest.raises(ValidationError, match="verdict"):
        result(verdict="error")


def test_station_going_offline_rejects_waiting_parts_and_refuses_new_ones():
    t = PartTracker(deadline_s=2.0)
    t.expect("P1", ["cam1"], now=0.0)
    t.expect("P2", ["cam2"], now=0.0)
    [decision] = t.set_online("cam1", False, now=0.5)
    assert (decision.part_id, decision.reason, decision.missing) == ("P1", "station_offline", ["cam1"])
    [refused] = t.expect("P3", ["cam1", "cam2"], now=0.6)
    assert (refused.action, refused.reason, refused.missing) == ("reject", "station_offline", ["cam1"])
    assert t.set_online("cam1", True, now=0.7) == []
    assert t.expect("P4", ["cam1"], now=0.8) == []
    assert t.pending == 2  # P2 and P4


def test_a_part_id_announced_again_rejects_both_parts_of_that_id():
    t = PartTracker(deadline_s=2.0)
    assert t.expect("P1", ["cam1", "cam2"], now=0.0) == []
    t.on_result(result("cam1", "P1"), now=0.1)
    waiting, refused = t.expect("P1", ["cam1", "cam2"], now=0.2)
    assert (waiting.action, waiting.reason, waiting.missing, waiting.verdicts) == (
        "reject",
        "duplicate_part_id",
        ["cam2"],
        {"cam1": "pass"},
    )
    assert (refused.action, refused.reason, refused.missing) == ("reject", "duplicate_part_id", ["cam1", "cam2"])
    assert t.pending == 0 and t.on_result(result("cam2", "P1"), now=0.3) == (Outcome.LATE, None)


def test_a_part_id_decided_before_it_was_announced_is_rejected_when_announced():
    t = PartTracker(deadline_s=2.0)
    assert t.on_result(result("cam1", "P5"), now=0.0)[1].action == "accept"  # an early trigger's result
    [refused] = t.expect("P5", ["cam1"], now=0.1)
    assert (refused.part_id, refused.action, refused.reason) == ("P5", "reject", "duplicate_part_id")
    [again] = t.expect("P5", ["cam1"], now=0.2)
    assert again.reason == "duplicate_part_id" and t.pending == 0


def test_recent_set_is_bounded_and_forgets_the_oldest():
    seen = RecentSet(3)
    assert [seen.add(k) for k in "abca"] == [True, True, True, False]
    seen.add("d")
    assert "a" not in seen and "d" in seen and len(seen) == 3


def test_result_ids_are_remembered_per_station_so_one_station_cannot_shadow_another():
    t = PartTracker(deadline_s=2.0)
    t.expect("P1", ["cam1", "cam2"], now=0.0)
    rid = uuid.uuid4().hex
    assert t.on_result(result("cam2", rid=rid), now=0.1) == (Outcome.PARTIAL, None)
    outcome, decision = t.on_result(result("cam1", verdict="fail", rid=rid), now=0.2)
    assert (outcome, decision.action, decision.reason) == (Outcome.DECIDED, "reject", "fail")

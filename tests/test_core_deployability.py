"""inspector.deployability: the verdict and each of its reasons, from scores alone."""

import numpy as np

from inspector.decision import DecisionPolicy
from inspector.deployability import Deployability, LineBudget, Problem, absent_defect_classes, assess, no_usable_images

IS_DEFECT = np.r_[np.zeros(60, bool), np.ones(40, bool)]
SEPARATED = np.r_[np.linspace(0.0, 0.3, 60), np.linspace(0.7, 1.0, 40)]


def problems(verdict):
    return [r.problem for r in verdict.reasons]


def test_a_model_that_separates_the_parts_is_deployable():
    v = assess(
        SEPARATED,
        IS_DEFECT,
        DecisionPolicy(threshold=0.5),
        predicted=IS_DEFECT.astype(int),
        best_epoch=12,
        epochs=20,
        basis="test split",
    )
    assert v.status is Deployability.DEPLOYABLE and v.deployable and not v.reasons
    assert v.summary().startswith("DEPLOYABLE (test split)")


def test_an_operating_point_unlikely_to_meet_the_budget_is_a_note_on_a_passing_verdict():
    unsure = assess(SEPARATED, IS_DEFECT, DecisionPolicy(threshold=0.5), chance=0.2)
    assert unsure.deployable and any("is 20%: this DEPLOYABLE on 100 images may not hold" in n for n in unsure.notes)
    unfit = assess(SEPARATED, IS_DEFECT, DecisionPolicy(threshold=0.9), chance=0.2)
    assert not unfit.deployable and any("is 20%: the scores it was chosen on already said so" in n for n in unfit.notes)
    sure = assess(SEPARATED, IS_DEFECT, DecisionPolicy(threshold=0.5), chance=0.9)
    assert not any("chance" in n for n in sure.notes)


def test_constant_model_is_not_deployable():
    v = assess(np.full(100, 0.2), IS_DEFECT, DecisionPolicy(threshold=0.5), predicted=np.zeros(100, int))
    assert v.status is Deployability.NOT_DEPLOYABLE
    assert problems(v)[:3] == [Problem.CONSTANT_PREDICTION, Problem.CHANCE_AUC, Problem.ESCAPES_OVER_BUDGET]
    assert "NOT DEPLOYABLE" in v.to_html() and "constant prediction" in v.to_html()


def test_rates_over_the_budget_never_improved_and_training_images():
    scores = SEPARATED.copy()
    scores[60] = 0.1  # one escape of 40 = 2.5 % > 2 %
    scores[:6] = 0.9  # six false rejects of 60 = 10 % > 5 %
    v = assess(scores, IS_DEFECT, DecisionPolicy(threshold=0.5), best_epoch=1, epochs=30, training_images=100)
    assert problems(v) == [
        Problem.ESCAPES_OVER_BUDGET,
        Problem.FALSE_REJECTS_OVER_BUDGET,
        Problem.NEVER_IMPROVED,
        Problem.TRAINING_IMAGES,
    ]
    relaxed = assess(
        scores, IS_DEFECT, DecisionPolicy(threshold=0.5), LineBudget(max_escape_rate=0.05, max_false_reject_rate=0.2)
    )
    assert relaxed.deployable


def test_review_band_parts_are_neither_escapes_nor_false_rejects():
    scores = SEPARATED.copy()
    scores[60] = 0.45
    v = assess(scores, IS_DEFECT, DecisionPolicy(threshold=0.5, review_low=0.4, review_high=0.6))
    assert v.deployable


def test_a_review_band_that_holds_most_parts_is_not_a_usable_line():
    v = assess(SEPARATED, IS_DEFECT, DecisionPolicy(threshold=0.9, review_low=0.1, review_high=0.9))
    assert problems(v) == [Problem.REVIEW_OVER_BUDGET] and "sends 66.0% (66/100) of parts" in v.reasons[0].message


def test_good_parts_only_is_judged_without_a_constant_verdict():
    v = assess(np.full(30, 0.01), np.zeros(30, bool), DecisionPolicy(threshold=0.5), predicted=np.zeros(30, int))
    assert v.deployable and "escapes cannot be measured" in v.notes[0]


def test_defect_classes_without_a_judged_image_are_a_note_not_a_reason():
    labels = np.r_[np.zeros(60, int), np.full(40, 2)]  # good, then "stain"; no "spot"
    absent = absent_defect_classes(labels, ["good", "spot", "stain"], good_index=0)
    assert absent == ["spot"]
    v = assess(SEPARATED, IS_DEFECT, DecisionPolicy(threshold=0.5), predicted=labels, absent=absent)
    assert v.deployable and v.notes[-1] == (
        "no image of defect class spot among the judged ones: this verdict says nothing about how many of "
        "those parts escape"
    )


def test_a_split_too_small_for_the_budget_says_the_verdict_rests_on_single_images():
    v = assess(SEPARATED, IS_DEFECT, DecisionPolicy(threshold=0.5))  # 40 defects: one is 2.5 % > 2 %
    assert v.deployable and v.notes == [
        "only 40 defect images judged: one is 2.5%, more than the line's escape budget of 2%, so this verdict "
        "rests on single images; judge on more before trusting it"
    ]
    roomy = LineBudget(max_escape_rate=0.03)
    assert assess(SEPARATED, IS_DEFECT, DecisionPolicy(threshold=0.5), roomy).notes == []
    few_good = assess(SEPARATED[40:], IS_DEFECT[40:], DecisionPolicy(threshold=0.5), roomy)  # 20 good: 5 % each
    assert few_good.notes == []
    few_good = assess(SEPARATED[45:], IS_DEFECT[45:], DecisionPolicy(threshold=0.5), roomy)  # 15 good
    assert [n.split(":")[0] for n in few_good.notes] == ["only 15 good images judged"]


def test_all_images_skipped_counts_the_reasons_and_round_trips():
    v = no_usable_images(["ROI does not fit"] * 3 + ["cannot decode"], basis="evaluate")
    assert problems(v) == [Problem.NO_USABLE_IMAGES]
    assert "all 4 skipped (3 x ROI does not fit; 1 x cannot decode)" in v.reasons[0].message
    back = type(v).from_dict(v.to_dict())
    assert back.to_dict() == v.to_dict() and back.status is Deployability.NOT_DEPLOYABLE


def test_a_handful_of_images_is_too_few_to_call_a_model_deployable():
    policy = DecisionPolicy(threshold=0.5)
    perfect = assess(np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True]), policy)
    assert problems(perfect) == [Problem.TOO_FEW_IMAGES, Problem.TOO_FEW_IMAGES]
    assert perfect.reasons[0].message.startswith(
        "only 2 defect images judged, too few to judge a model (needs at least 5)"
    )
    assert not [n for n in perfect.notes if "rests on single images" in n]  # the reason says it already
    five = assess(np.r_[np.full(5, 0.1), np.full(5, 0.9)], np.r_[np.zeros(5, bool), np.ones(5, bool)], policy)
    assert five.deployable and len([n for n in five.notes if "rests on single images" in n]) == 2
    good_only = assess(np.full(3, 0.1), np.zeros(3, bool), policy)  # a few good parts from the line: still too few
    assert problems(good_only) == [Problem.TOO_FEW_IMAGES]
    assert assess(np.full(30, 0.1), np.zeros(30, bool), policy).deployable  # a folder of good parts is a fair check
    relaxed = assess(
        np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True]), policy, LineBudget(min_judged=2)
    )
    assert Problem.TOO_FEW_IMAGES not in problems(relaxed)

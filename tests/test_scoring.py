"""How outcomes are scored, on hand-made cases where a plausible one-line bug changes the number: class names matched
as whole words, boxes mapped back with each axis's own ratio, MFRS credit indexed by the true distance, nothing
after `</answer>`, and macro-F1 / quadratic kappa as defined (checked by hand and against scikit-learn).
Each test names the bug it guards against; `bench/mutants.py` plants those bugs and checks that these tests fail."""
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from vrft_aug import rewards as R
from vrft_aug.matching import ClassMatcher
from vrft_aug.core import parse_completion
from vrft_aug.evaluate import task_metrics, score_completion

def _c(answer: str, think: str = "t") -> str: return f"<think>{think}</think><answer>{answer}</answer>"

CELLS = ["neutrophil", "lymphocyte", "eosinophil", "monocyte"]

# --- accuracy: a class name counts only as a whole word (bug: substring match) ---------------------------------------

@pytest.mark.parametrize("answer", ["monocytelike", "premonocyte", "monocytes2", "a monocytelike cell", "lymphocytemonocyte"])
def test_accuracy_class_name_inside_a_longer_word_is_not_the_class(answer):
    assert R.accuracy_reward(None, [_c(answer)], solution=["monocyte"], choices=[CELLS]) == [0.0]

@pytest.mark.parametrize("answer", ["monocyte", "a monocyte", "it is a monocyte.", "Monocytes", "monocyte-like cell"])
def test_accuracy_class_name_as_a_word_is_the_class(answer):
    assert R.accuracy_reward(None, [_c(answer)], solution=["monocyte"], choices=[CELLS]) == [1.0]

def test_evaluation_matcher_uses_word_boundaries_too():
    m = ClassMatcher(CELLS)
    assert m.resolve("monocytelike") is None and m.resolve("a monocyte") == 3

# --- iou_reward: boxes in the model's frame go back with x by the width ratio, y by the height ratio -----------------

GT = [100.0, 60.0, 300.0, 420.0]  # x1, y1, x2, y2 on a 640 x 480 image

@pytest.mark.parametrize("model_size", [(320, 240), (112, 112), (640, 240), (160, 480)])
def test_iou_reward_true_box_in_the_model_frame_scores_one(model_size):
    (W, H), (w, h) = (640, 480), model_size
    x1, y1, x2, y2 = GT
    pred = [x1 * w / W, y1 * h / H, x2 * w / W, y2 * h / H]   # the true box as the model saw it
    c = _c("[" + ", ".join(f"{v:g}" for v in pred) + "]")
    assert R.iou_reward(None, [c], bbox=[GT], image_size=[(W, H)], model_image_size=[model_size]) == [pytest.approx(1.0)]

def test_iou_reward_y_scaled_by_width_ratio_would_miss():
    # the same box scaled with one ratio for both axes is not the true box when the resize is not proportional
    c = _c(f"[{100 * 112 / 640:g}, {60 * 112 / 640:g}, {300 * 112 / 640:g}, {420 * 112 / 640:g}]")
    r = R.iou_reward(None, [c], bbox=[GT], image_size=[(640, 480)], model_image_size=[(112, 112)])[0]
    assert r < 0.9, r

def test_evaluation_maps_boxes_back_per_axis():
    from PIL import Image
    from vrft_aug.data import Sample
    s = Sample(Image.new("RGB", (640, 480)), label=0, dataset="toy", task="localization", class_names=["lesion"],
               id="toy/test/0", bbox=GT)
    pred = f"[{100 * 112 / 640:g}, {60 * 112 / 480:g}, {300 * 112 / 640:g}, {420 * 112 / 480:g}]"
    rec = score_completion(s, _c(pred), model_size=(112, 112))
    assert rec["iou"] == pytest.approx(1.0) and rec["pred"] == pytest.approx(tuple(GT))

# --- MFRS: credit R(|predicted - true|), by distance ------------------------------------------------------------------

GRADES = ["no", "mild", "moderate", "severe", "proliferative"]

@pytest.mark.parametrize("scheme,values", [("exp", [1.0, 0.25, 1 / 16, 1 / 64, 1 / 256]),
                                           ("table", [1.0, 0.5, 0.1, 0.0, 0.0]),
                                           ("binary", [1.0, 0.0, 0.0, 0.0, 0.0]),
                                           ([1.0, 0.7, 0.2], [1.0, 0.7, 0.2, 0.0, 0.0])])
@pytest.mark.parametrize("truth", [0, 2, 4])
def test_mfrs_reward_by_distance(scheme, values, truth):
    cs = [_c(str(p)) for p in range(5)] + [_c(GRADES[p]) for p in range(5)]   # by number and by name
    got = R.mfrs_reward(None, cs, grade=[truth] * 10, choices=[GRADES] * 10, scheme=scheme)
    want = [values[abs(p - truth)] for p in range(5)] * 2
    assert got == pytest.approx(want), (scheme, truth, got)

def test_mfrs_value_by_distance():
    assert [R.mfrs_value(d, "exp") for d in range(4)] == [1.0, 0.25, 0.0625, 0.015625]
    assert [R.mfrs_value(d, "table") for d in range(4)] == [1.0, 0.5, 0.1, 0.0]
    assert [R.mfrs_value(d, "linear", num_grades=5) for d in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert [R.mfrs_value(d, "power", num_grades=5) for d in range(3)] == [1.0, 0.5625, 0.25]

def test_mfrs_grade_outside_the_scale_scores_zero():
    assert R.mfrs_reward(None, [_c("7"), _c("5")], grade=[4, 4], choices=[GRADES] * 2) == [0.0, 0.0]

# --- format: nothing but whitespace after </answer> (and before <think>) ---------------------------------------------

@pytest.mark.parametrize("tail", [" extra", "x", "</think>", ".", " <answer>b</answer>", "\n\nso the answer is b"])
def test_format_reward_rejects_text_after_answer(tail):
    t = _c("b") + tail
    assert R.format_reward(None, [t]) == [0.0] and not parse_completion(t).well_formed
    u = "<answer>b</answer>" + tail
    assert R.format_reward_no_think(None, [u]) == [0.0] and not parse_completion(u, think=False).well_formed

@pytest.mark.parametrize("head", ["x", "so: ", "</answer>"])
def test_format_reward_rejects_text_before_think(head):
    assert R.format_reward(None, [head + _c("b")]) == [0.0] and not parse_completion(head + _c("b")).well_formed

def test_format_reward_accepts_surrounding_whitespace_only():
    for t in (_c("b"), "  " + _c("b") + " \n", "\n" + _c("b") + "\t"):
        assert R.format_reward(None, [t]) == [1.0] and parse_completion(t).well_formed
    assert R.format_reward_no_think(None, ["<answer>b</answer>\n"]) == [1.0]

# --- task metrics on an imperfect, imbalanced prediction ----------------------------------------------------------------

def _records(truth, pred):
    return [dict(truth=t, pred=p, well_formed=p is not None, length=10) for t, p in zip(truth, pred)]

# 4 classes, 12 samples: class 0 dominates, class 3 is never predicted, two samples have no valid answer (None)
TRUTH = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
PRED = [0, 0, 0, 0, 1, None, 1, 0, 2, 3, 2, None]

def _macro_f1_by_hand(truth, pred, K):
    f1s = []
    for k in range(K):
        tp = sum(t == k and p == k for t, p in zip(truth, pred))
        fp = sum(t != k and p == k for t, p in zip(truth, pred))
        fn = sum(t == k and p != k for t, p in zip(truth, pred))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1s))

def test_macro_f1_is_the_mean_of_per_class_f1():
    m = task_metrics("classification", _records(TRUTH, PRED), CELLS)
    want = _macro_f1_by_hand(TRUTH, PRED, 4)
    p = [-1 if v is None else v for v in PRED]
    assert m["macro_f1"] == pytest.approx(want) == pytest.approx(f1_score(TRUTH, p, labels=[0, 1, 2, 3], average="macro"))
    micro = f1_score(TRUTH, p, labels=[0, 1, 2, 3], average="micro")
    assert abs(want - micro) > 0.1, (want, micro)   # this case tells macro from micro
    assert m["accuracy"] == pytest.approx(6 / 12)
    assert m["confusion_matrix"][0] == [4, 1, 0, 0, 1] and m["confusion_matrix"][3] == [0, 0, 1, 0, 1]

def _qwk_by_hand(truth, pred, K):
    O = np.zeros((K, K))
    for t, p in zip(truth, pred): O[t, p] += 1
    w = np.array([[(i - j) ** 2 for j in range(K)] for i in range(K)]) / (K - 1) ** 2
    E = np.outer(O.sum(1), O.sum(0)) / O.sum()
    return 1 - (w * O).sum() / (w * E).sum()

def test_quadratic_weighted_kappa_on_grading():
    truth = [0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 4, 2]
    pred = [0, 0, 1, 0, 4, 1, 3, 2, 3, None, 2, 0]
    m = task_metrics("grading", _records(truth, pred), GRADES)
    q = [p if p is not None else (0 if t >= 2 else 4) for t, p in zip(truth, pred)]  # no answer: the farthest grade
    want = _qwk_by_hand(truth, q, 5)
    assert m["qwk"] == pytest.approx(want) == pytest.approx(cohen_kappa_score(truth, q, weights="quadratic"))
    linear = cohen_kappa_score(truth, q, weights="linear")
    assert abs(want - linear) > 0.05, (want, linear)   # this case tells quadratic from linear weights
    assert m["mae"] == pytest.approx(np.mean(np.abs(np.array(truth) - np.array(q))))
    assert m["macro_f1"] == pytest.approx(_macro_f1_by_hand(truth, [-1 if p is None else p for p in pred], 5))

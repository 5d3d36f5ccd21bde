"""Property tests for vrft_aug.rewards: never raise on any completion text, stay in range, keep their invariances,
and combine rewards exactly as TRL's GRPOTrainer does. Worked examples and the reward-hacking tables live in
nbs/04_rewards.ipynb."""
import math, pickle

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from sacrebleu.metrics import BLEU

from vrft_aug.core import answer_block, normalize_answer, parse_completion, well_formed_answer, well_formed_parts
from vrft_aug import rewards as R
from vrft_aug.boxes import box_giou, box_iou
from vrft_aug.matching import ClassMatcher

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TAGS = ["<think>", "</think>", "<answer>", "</answer>", "<Think>", "<answer", "</", "<", ">"]
CLASSES = ["neutrophil", "lymphocyte", "blood cell", "cell", "normal", "abnormal"]

# text built from protocol tags, class names, box-like fragments, unicode and whitespace: where the bugs are
pieces = st.one_of(st.sampled_from(TAGS), st.sampled_from(CLASSES), st.text(max_size=12),
                   st.sampled_from([" ", "\n", "\t", "\u00a0", "\u2003", "\u200b", "[", "]", ",", "(", ")", "{", "}",
                                    "-", ".", "1e999", "9" * 400, "NaN", "'Confidence': 0.7", "A.", "(B)", "not", "or"]),
                   st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr))
texts = st.lists(pieces, max_size=30).map("".join)
completions = st.one_of(texts, texts.map(lambda t: [{"role": "assistant", "content": t}]),
                        st.binary(max_size=40), st.none(), st.integers())
boxes = st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=4, max_size=4)

def _in_range(vals, lo=0.0, hi=1.0, allow_none=True):
    for v in vals:
        if v is None: assert allow_none; continue
        assert isinstance(v, float) and math.isfinite(v) and lo <= v <= hi, v

@SETTINGS
@given(texts)
def test_fast_parse_matches_core(t):
    p = parse_completion(t)
    assert well_formed_parts(t) == ((p.think, p.answer) if p.well_formed else None)
    q = parse_completion(t, think=False)
    assert well_formed_answer(t) == (q.answer if q.well_formed else None)

@SETTINGS
@given(st.lists(completions, min_size=1, max_size=4), boxes)
def test_rewards_never_raise_and_stay_in_range(cs, gt):
    n = len(cs)
    prompt = "A. neutrophil\nB. lymphocyte\nC. blood cell\nD. cell\nE. normal\nF. abnormal"
    _in_range(R.format_reward([prompt] * n, cs), allow_none=False)
    _in_range(R.format_reward_no_think(None, cs), allow_none=False)
    _in_range(R.accuracy_reward([prompt] * n, cs, solution=["neutrophil"] * n, choices=[CLASSES] * n), allow_none=False)
    _in_range(R.accuracy_reward(None, cs, solution=[["cell", "normal"]] * n, choices=[CLASSES] * n, task=["multilabel"] * n))
    for f in [R.iou_reward, R.make_iou_reward("giou"), R.make_iou_reward("visual_rft"), R.make_iou_reward("confidence"),
              R.make_iou_reward(coords="norm1000")]:
        _in_range(f(None, cs, bbox=[gt] * n, image_size=[(640, 480)] * n), allow_none=False)
    for s in R.MFRS_SCHEMES:
        _in_range(R.mfrs_reward(None, cs, grade=[2] * n, num_grades=[5] * n, scheme=s, choices=[["a", "b", "c", "d", "e"]] * n))
    _in_range(R.recitation_reward(None, cs, knowledge=["pale pink cytoplasm with a lobed nucleus"] * n), allow_none=False)
    _in_range(R.recitation_reward(None, cs, knowledge=["pale pink cytoplasm"] * n, tokenize="13a"), allow_none=False)

@SETTINGS
@given(st.sampled_from(["neutrophil", "It is a neutrophil.", "lymphocyte", "blood cell", "neutrophil or cell", "B", ""]),
       st.sampled_from(["", " ", "\n", "\t ", "\u00a0"]), st.sampled_from(["", " ", "\n\n"]),
       st.sampled_from([str.lower, str.upper, str.title, str.swapcase, lambda s: s]))
def test_accuracy_ignores_case_and_surrounding_whitespace(ans, pre, post, case):
    prompt = "A. neutrophil\nB. lymphocyte\nC. blood cell\nD. cell"
    base = R.accuracy_reward([prompt], [f"<think>x</think><answer>{ans}</answer>"], solution=["neutrophil"], choices=[CLASSES[:4]])
    var = R.accuracy_reward([prompt], [f"<think>x</think><answer>{pre}{case(ans)}{post}</answer>"],
                            solution=["neutrophil"], choices=[CLASSES[:4]])
    assert base == var

@SETTINGS
@given(st.text(max_size=40))
def test_accuracy_correct_iff_resolves_to_solution(ans):
    r = R.accuracy_reward(None, [f"<answer>{ans}</answer>"], solution=["neutrophil"], choices=[CLASSES])[0]
    if "<" not in ans:
        assert r == (1.0 if ClassMatcher(CLASSES).resolve(ans) == 0 else 0.0)
        # a strict substring of the class name never scores
        if normalize_answer(ans) and normalize_answer(ans) in "neutrophil" and normalize_answer(ans) != "neutrophil":
            assert r == 0.0

@SETTINGS
@given(boxes, boxes)
def test_iou_properties(a, b):
    iab = box_iou(a, b)
    assert iab == box_iou(b, a)
    assert 0.0 <= iab <= 1.0
    g = box_giou(a, b)
    assert -1.0 <= g <= 1.0 and math.isclose(g, box_giou(b, a), abs_tol=1e-12)
    assert g <= iab + 1e-12                      # GIoU never exceeds IoU
    area = (max(a[0], a[2]) - min(a[0], a[2])) * (max(a[1], a[3]) - min(a[1], a[3]))
    if area > 0: assert box_iou(a, a) == 1.0 and box_giou(a, a) == pytest.approx(1.0)
    else: assert box_iou(a, a) == 0.0

@SETTINGS
@given(st.lists(st.integers(0, 1000), min_size=4, max_size=4))
def test_iou_reward_of_the_true_box_is_one(v):
    x1, y1, x2, y2 = v
    if x1 == x2 or y1 == y2: return
    gt = [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]
    c = f"<think>t</think><answer>[{x1}, {y1}, {x2}, {y2}]</answer>"  # corners in any order
    for mode in ("iou", "giou", "visual_rft", "confidence"):
        assert R.make_iou_reward(mode)(None, [c], bbox=[gt], image_size=[(1000, 1000)]) == [1.0]

@SETTINGS
@given(st.integers(2, 12), st.floats(0.1, 5))
def test_mfrs_monotone(K, mfrs_power):
    for s in R.MFRS_SCHEMES:
        vals = [R.mfrs_value(d, s, K, mfrs_power) for d in range(K + 2)]
        assert vals[0] == 1.0 and all(0.0 <= v <= 1.0 for v in vals)
        assert all(b <= a for a, b in zip(vals, vals[1:])), (s, vals)

words = st.lists(st.sampled_from("the a pink pale nucleus lobes cell granules three thin , . dark".split()), max_size=25).map(" ".join)

@SETTINGS
@given(words, st.lists(words.filter(lambda w: w.strip(" ,.")), min_size=1, max_size=3),
       st.integers(1, 5), st.sampled_from(["exp", "floor", "add-k", "none"]))
def test_recitation_fast_path_equals_sacrebleu(hyp, refs, order, smoothing):
    got = R.recitation_reward(None, [f"<think>{hyp}</think><answer>x</answer>"], knowledge=[refs], order=order,
                              smoothing=smoothing)[0]
    if not hyp.strip(): assert got == 0.0; return
    want = BLEU(tokenize="none", effective_order=True, max_ngram_order=order, smooth_method=smoothing).sentence_score(
        normalize_answer(hyp), [normalize_answer(r) for r in refs]).score / 100
    assert got == pytest.approx(min(1.0, want), abs=1e-9)

def test_named_rewards_pickle_and_keep_their_names():
    for f in [R.make_iou_reward("giou", "norm1000"), R.make_mfrs_reward("table"), R.make_recitation_reward(order=2),
              R.make_format_reward(nonempty=False), R.accuracy_reward]:
        g = pickle.loads(pickle.dumps(f))
        assert g.__name__ == f.__name__
    from trl.trainer.utils import get_callable_name
    assert get_callable_name(R.make_mfrs_reward("linear")) == "mfrs_reward_linear"

@SETTINGS
@given(st.lists(st.lists(st.one_of(st.none(), st.integers(0, 8).map(lambda x: x / 8)), min_size=3, max_size=3), min_size=1, max_size=8),
       st.sampled_from(["group", "none", "batch"]), st.sampled_from(["sum_then_normalize", "normalize_then_sum"]))
def test_score_group_matches_trl(rows, scale, agg):
    """Replays the lines of GRPOTrainer._generate_and_score_completions (TRL 1.16) on the same per-function rewards."""
    import torch
    from trl.trainer.utils import nanstd
    G, weights = len(rows), [1.0, 0.5, -0.5]
    table = {i: [r[i] for r in rows] for i in range(3)}
    funcs = []
    for i in range(3):
        def f(prompts, completions, _i=i, **kw): return list(table[_i])
        f.__name__ = f"term{i}"; funcs.append(f)
    got = R.score_group(["c"] * G, {}, (funcs, weights), scale_rewards=scale, aggregation=agg)
    # --- TRL ---
    rpf = torch.tensor([[math.nan if v is None else v for v in r] for r in rows], dtype=torch.float32)
    w = torch.tensor(weights)
    unscorable = torch.isnan(rpf).all(dim=1)
    if agg == "sum_then_normalize":
        rewards = (rpf * w.unsqueeze(0)).nansum(dim=1); rewards[unscorable] = torch.nan
        mean = torch.nanmean(rewards.view(-1, G), dim=1).repeat_interleave(G)
        if scale == "batch": std = nanstd(rewards).expand_as(rewards) if G > 1 else torch.zeros_like(rewards)
        else: std = nanstd(rewards.view(-1, G), dim=1).repeat_interleave(G) if G > 1 else torch.zeros_like(rewards)
        adv = rewards - mean
        if scale != "none": adv = adv / (std + 1e-4)
    else:
        grouped = rpf.view(-1, G, 3)
        mean_k = torch.nanmean(grouped, dim=1, keepdim=True)
        std_k = nanstd(grouped, dim=1, keepdim=True) if G > 1 else torch.zeros_like(mean_k)
        rk = ((grouped - mean_k) / (std_k + 1e-4)).view(-1, 3)
        rewards = (rk * w.unsqueeze(0)).nansum(dim=1); rewards[unscorable] = torch.nan
        std = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        adv = (rewards - torch.nanmean(rewards)) / (std + 1e-4)
    adv = torch.nan_to_num(adv, nan=0.0)
    assert got.advantages == pytest.approx(adv.tolist(), abs=2e-3, rel=1e-4)
    if agg == "sum_then_normalize":
        assert [x if not math.isnan(x) else None for x in got.total] == \
               pytest.approx([x if not math.isnan(x) else None for x in rewards.tolist()], abs=1e-5)

def test_weights_fit_grpo_config(tmp_path):
    from trl import GRPOConfig
    funcs, weights = R.build_reward_funcs({"accuracy": 1.0, "format": 1.0, "iou": 1.0, "recitation": -0.5})
    cfg = GRPOConfig(output_dir=str(tmp_path), reward_weights=weights, use_cpu=True, bf16=False, report_to=[])
    assert cfg.reward_weights == weights and len(funcs) == len(weights)

@SETTINGS
@given(st.text(max_size=60) | texts)
def test_bleu_words_are_normalised_words(t):
    assert R._words(t) == normalize_answer(t).split()

@SETTINGS
@given(texts)
def test_answer_matches_core_when_there_is_one_answer_block(t):
    a = answer_block(t)
    if t.count("<answer>") == 1 and t.count("</answer>") == 1: assert a == parse_completion(t).answer
    else: assert a is None

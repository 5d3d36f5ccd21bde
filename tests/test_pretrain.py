"""Pre-training: bit-for-bit reproducibility at a toy budget, the committed base (manifest, tokenizer, what it can do),
scene and question invariants."""
import json, shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from vrft_aug.core import parse_completion
from vrft_aug.pretrain import (PretrainConfig, SCENE_KINDS, build_pretrained_base, draw_scene, question_kinds, scene_qa,
                               reading_qa, rotate_definitions, fits, target_text, tiny_base_path, verify_base,
                               load_pretrained_base, messages, max_tokens_per_word, eval_perception,
                               TINY_BASE_FILES, ARROW, object_pooling, SHAPES, OBJECT_SIZES, lookup_practice,
                               name_pieces, sft_batch, compact_line, text_reading_example,
                               text_reading_k, worded_reading_qa, eval_text_reading, scene_attributes, compact_definition)
from vrft_aug.boxes import box_iou, parse_boxes

TOY = PretrainConfig(size="test", steps=2, vision_steps=2, vision_batch_size=4, batch_size=4, reading_batch_size=2,
                     lookup_batch_size=2, text_steps=2, text_batch_size=4, text_eval_every=0, text_replay_batch_size=2,
                     eval_every=0, eval_n=0, synthmed_n=0)


def test_toy_build_is_bit_for_bit(tmp_path):
    a = build_pretrained_base(tmp_path / "a", seed=0, config=TOY, log=None)
    b = build_pretrained_base(tmp_path / "b", seed=0, config=TOY, log=None)
    c = build_pretrained_base(tmp_path / "c", seed=1, config=TOY, log=None)
    ha, hb, hc = (verify_base(p)["sha256"] for p in (a, b, c))
    assert set(ha) == set(TINY_BASE_FILES)
    assert ha == hb                                    # same seed, same bytes (with the config's 2 threads)
    assert ha["model.safetensors"] != hc["model.safetensors"]   # another seed, other weights
    assert ha["tokenizer.json"] == hc["tokenizer.json"]         # the tokenizer does not depend on the seed
    m = json.loads((a / "manifest.json").read_text())
    assert m["seed"] == 0 and m["config"]["steps"] == 2 and m["seconds"]["total"] > 0
    lk = m["curves"]["lookup"]                                   # look-up practice ran (one mean per logged point)
    assert len(lk) == len(m["curves"]["step"]) >= 1 and all(x is not None and x > 0 for x in lk)
    rp = m["curves"]["replay"]                                   # and the worded reading questions beside every image step
    assert len(rp) == len(lk) and all(x is not None and x > 0 for x in rp)
    assert m["curves"]["text"]["step"] == [2] and m["curves"]["text"]["loss"][0] > 0   # stage 0 ran before the others
    assert m["tokenizer"]["max_tokens_per_class_name_word"] <= 3


@pytest.fixture(scope="module")
def base():
    return load_pretrained_base()


def test_committed_base_matches_its_manifest():
    path = tiny_base_path()
    m = verify_base(path)
    assert set(TINY_BASE_FILES) <= set(m["sha256"])
    assert m["config"] == asdict(PretrainConfig())          # the defaults are the committed recipe
    assert m["seconds"]["total"] <= 60 * 60, m["seconds"]    # one command, at most an hour on 2 cores
    assert sum(f.stat().st_size for f in path.iterdir()) < 50_000_000


def test_committed_tokenizer_covers_every_class_name(base):
    _, proc = base
    n, word = max_tokens_per_word(proc.tokenizer)
    assert n <= 3, (n, word)


def test_committed_base_sees(base):
    """What the base brings, measured afresh on scenes no run has used (seeds differ from the manifest's). Thresholds sit
    well above chance (colour 1/14, shape 1/6, size 1/3, a random box ~0.05 IoU) and below the manifest's figures;
    reading is not asserted: the committed base does not read yet (README, issue 12)."""
    model, proc = base
    p = eval_perception(model, proc, n=16, seed=777)
    assert p["colour"] >= 0.4 and p["shape"] >= 0.3 and p["size"] >= 0.7, p
    assert p["box"] >= 0.15, p
    assert p["options_valid"] >= 0.75, p                     # answers to option questions are listed options


def test_verify_base_names_the_bad_file(tmp_path):
    dst = tmp_path / "base"
    shutil.copytree(tiny_base_path(), dst)
    with open(dst / "config.json", "a") as f: f.write(" ")
    with pytest.raises(ValueError, match="config.json"): verify_base(dst)
    (dst / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"): verify_base(dst)
    with pytest.raises(FileNotFoundError, match="manifest"): verify_base(tmp_path)


def test_bad_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="size"): build_pretrained_base(tmp_path, config=PretrainConfig(size="huge"))
    with pytest.raises(ValueError, match="steps"): build_pretrained_base(tmp_path, config=PretrainConfig(steps=-1))
    with pytest.raises(ValueError, match="reading_share"): build_pretrained_base(tmp_path, config=PretrainConfig(reading_share=2))
    with pytest.raises(ValueError, match="model_image_size"): build_pretrained_base(tmp_path, config=PretrainConfig(model_image_size=100))
    with pytest.raises(ValueError, match="vision_steps"): build_pretrained_base(tmp_path, config=PretrainConfig(probe_weight=0))
    with pytest.raises(ValueError, match="reading_mix"): build_pretrained_base(tmp_path, config=PretrainConfig(reading_mix={"pair": 1}))
    with pytest.raises(ValueError, match="lookup_batch_size"): build_pretrained_base(tmp_path, config=PretrainConfig(lookup_batch_size=-1))
    with pytest.raises(ValueError, match="text_steps"): build_pretrained_base(tmp_path, config=PretrainConfig(text_steps=-1))
    with pytest.raises(ValueError, match="text_batch_size"): build_pretrained_base(tmp_path, config=PretrainConfig(text_batch_size=0))


def test_stage_zero_changes_the_language_model_only(tmp_path):
    "Text steps move the language model (other bytes than without them) and leave the vision tower as initialised."
    from safetensors.torch import load_file
    cfg = dict(size="test", steps=0, vision_steps=0, probe_weight=0.0, eval_every=0, eval_n=0, synthmed_n=0)
    a = build_pretrained_base(tmp_path / "a", config=PretrainConfig(**cfg), log=None)
    b = build_pretrained_base(tmp_path / "b", config=PretrainConfig(**cfg, text_steps=2, text_batch_size=4, text_eval_every=0), log=None)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    moved = {k for k in wa if not torch.equal(wa[k], wb[k])}
    assert moved and not any("visual" in k for k in moved), sorted(moved)[:5]
    assert any("embed_tokens" in k or "layers.0." in k for k in moved)


@pytest.mark.parametrize("seed", range(3))
def test_text_reading_questions_have_one_matching_line(seed):
    rng = np.random.default_rng(seed)
    for k in (2, 3, 4):
        e = text_reading_example(rng, k)
        lines = [l[2:] for l in e["question"].split("\n") if l.startswith("- ")]
        image = e["question"].split("\n")[0][len("Image: "):-1]
        match = [l for l in lines if l.split(f" {ARROW} ")[0] == image]
        assert len(lines) == len(set(lines)) == k and len(match) == 1 and len(set(e["names"])) == k
        assert match[0].endswith(f" {ARROW} {e['answer']}")
        assert parse_completion(e["completion"]).answer.strip() == e["answer"]
        assert parse_completion(e["completion"]).think.strip() == match[0]        # the think restates the matching line
    assert [text_reading_k(s, 20, rng) for s in (0, 2, 3, 5)] == [2, 2, 3, 3] and {text_reading_k(19, 20, rng) for _ in range(50)} == {2, 3, 4}


def test_worded_reading_questions_describe_their_answer():
    rng = np.random.default_rng(0)
    for _ in range(50):
        e = worded_reading_qa(rng)
        words = e["question"].split("\n")[0][len("Image: "):-1]
        truth = e["answer"] if e["answer"] in e["names"] else e["names"][ord(e["answer"]) - 65]
        assert f"- {words} {ARROW} {truth}" in e["question"].split("\n")
        assert sum(compact_definition(a) == words for a in e["attrs"]) == 1
        assert e["completion"] == target_text(e)


def test_eval_text_reading_scores_what_the_model_writes():
    "A model that writes the right completion scores 1, a wrong listed name 0 but valid, an unlisted word 0 and invalid."
    _, proc = load_pretrained_base()
    tok, rng = proc.tokenizer, np.random.default_rng(999)
    ex = [text_reading_example(rng, 4, name_pieces(tok)) for _ in range(8)]

    class Fake:
        def __init__(self, pick): self.pick = pick
        def generate(self, input_ids, **kw):
            outs = []
            for e in ex[self.i:self.i + len(input_ids)]:
                outs.append(tok(tagged_completion("x", self.pick(e)), add_special_tokens=False)["input_ids"])
            self.i += len(input_ids)
            L = max(map(len, outs))
            return torch.cat([input_ids, torch.tensor([o + [tok.pad_token_id] * (L - len(o)) for o in outs])], 1)
    from vrft_aug.core import tagged_completion
    for pick, want in ((lambda e: e["answer"], 1.0), (lambda e: "zzqx", 0.0)):
        m = Fake(pick); m.i = 0
        r = eval_text_reading(m, proc, n=8, batch_size=3)
        assert r == dict(accuracy=want, valid=want), r
    m = Fake(lambda e: next(n for n in e["names"] if n != e["answer"])); m.i = 0
    assert eval_text_reading(m, proc, n=8, batch_size=3) == dict(accuracy=0.0, valid=1.0)


def test_lookup_practice_is_learnable_and_labelled():
    "Every answer row is a table line; a text-only batch has no image and labels exactly the completion."
    _, proc = load_pretrained_base()
    rng, pieces = np.random.default_rng(3), name_pieces(proc.tokenizer)
    for _ in range(100):
        ex = lookup_practice(rng, pieces)
        table = [compact_line(n, a) for n, a in zip(ex["names"], ex["attrs"])]
        assert all(l in ex["question"].split("\n") for l in table)
        rows = ex["completion"].split("\n")
        assert len(rows) == 2 * len(table) and all("- " + r in table for r in rows)
        asks = ex["question"].split("\n")[-len(rows):]              # the descriptions to look up, in the answer's order
        assert asks == ["- " + r.split(f" {ARROW} ")[0] for r in rows]
    b = sft_batch(proc, None, [ex["question"]], [ex["completion"]])
    assert "pixel_values" not in b
    lab = b["labels"][0][b["labels"][0] != -100]
    assert proc.tokenizer.decode(lab) == ex["completion"] + "<|im_end|>"


def _resolve(qa):
    a = qa["answer"]
    return qa["options"][ord(a) - 65] if qa["options"] and a not in qa["options"] else a


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(SCENE_KINDS))
def test_scene_answers_follow_the_drawing(seed, kind):
    rng = np.random.default_rng(seed)
    s = draw_scene(rng, kind)
    for qk in question_kinds(s):
        qa = scene_qa(s, rng, qk)
        p = parse_completion(target_text(qa))
        assert p.well_formed and p.answer == qa["answer"]
        ans = _resolve(qa)
        if qk == "count": assert int(ans) == sum(o.colour == s.focus for o in s.objects)
        if qk == "total": assert int(ans) == len(s.objects)
        if qk == "colour" and len(s.objects) == 1: assert ans == s.objects[0].colour
        if qk == "box":
            b = [v / 2 for v in parse_boxes(ans)[0][0]]
            assert max(box_iou(b, o.box) for o in s.objects) > 0.95
        if qk == "inner_count": assert int(ans) == s.objects[0].n_inner


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(("single", "count", "composite")), long=st.booleans())
def test_reading_has_exactly_one_fitting_definition_and_rotation_moves_it(seed, kind, long):
    rng = np.random.default_rng(seed)
    s = draw_scene(rng, kind)
    qa = reading_qa(s, rng, n_classes=4, long=long)
    fitting = [n for n, a in zip(qa["names"], qa["attrs"]) if fits(s, a)]
    assert fitting == [_resolve(qa)]
    think = parse_completion(target_text(qa)).think
    if long: assert think.endswith(f" {ARROW} {fitting[0]}")
    else: assert f"\n- {think}\n" in qa["question"]            # the think restates the fitting line word for word
    rot = rotate_definitions(qa)
    lines, orig = (_definitions(q["question"], long) for q in (rot, qa))
    assert lines[rot["follow"]] == orig[fitting[0]]          # the fitting description now stands beside `follow`
    assert sorted(lines.values()) == sorted(orig.values()) and lines[fitting[0]] != orig[fitting[0]]


def _definitions(question, long):
    "name -> definition of a reading question, in either layout."
    ls = [l[2:] for l in question.split("\n") if l.startswith("- ")]
    if long: return dict(l.split(": ", 1) for l in ls if ": " in l)
    return {l.rsplit(f" {ARROW} ", 1)[1]: l.rsplit(f" {ARROW} ", 1)[0] for l in ls if f" {ARROW} " in l}


def test_object_pooling_reads_each_object_from_its_own_tokens():
    rng = np.random.default_rng(5)
    scenes = [draw_scene(rng, k) for k in ("single", "pair", "composite", "count")]
    w, shapes, sizes = object_pooling(scenes, 4)
    n = sum(len(s.objects) for s in scenes)
    assert w.shape == (n, 4 * 16) and torch.allclose(w.sum(1), torch.ones(n))
    row = 0
    for i, s in enumerate(scenes):
        for o in s.objects:
            assert w[row, :i * 16].sum() == 0 and w[row, (i + 1) * 16:].sum() == 0   # only its own image's tokens
            cx, cy = o.center
            t = i * 16 + int(cy // (s.side / 4)) * 4 + int(cx // (s.side / 4))         # raster order: row major
            assert w[row, t] > 0                                                  # the token under its centre counts
            assert SHAPES[shapes[row]] == o.shape and OBJECT_SIZES[sizes[row]] == o.size
            row += 1


def test_eval_reading_separates_perception_from_the_look_up(monkeypatch):
    "A think that describes the image and names its line reads; one that names a distractor's line is a look-up, not a read."
    import vrft_aug.pretrain as P
    from vrft_aug.core import tagged_completion
    truth = lambda q: q["answer"] if q["answer"] in q["names"] else q["names"][ord(q["answer"]) - 65]
    def fake(write):
        return lambda model, processor, batch, *a, **k: [write(q) for _, q in batch]
    def line(q, i): return tagged_completion(f"{compact_definition(q['attrs'][i])} {ARROW} {q['names'][i]}", q["names"][i])
    right = lambda q: line(q, q["names"].index(truth(q)))
    other = lambda q: next(i for i, n in enumerate(q["names"]) if n != truth(q))
    cases = {   # writer -> (reading, think_describes_image, think_listed, copy_given_listed)
        "reads": (right, (1.0, 1.0, 1.0, 1.0)),
        "sees, then invents a name": (lambda q: tagged_completion(f"{compact_definition(q['attrs'][q['names'].index(truth(q))])} {ARROW} zzqx", "zzqx"), (0.0, 1.0, 1.0, 0.0)),
        "sees a distractor and looks it up": (lambda q: line(q, other(q)), (0.0, 0.0, 1.0, 1.0)),
        "sees, then names a distractor": (lambda q: tagged_completion(f"{compact_definition(q['attrs'][q['names'].index(truth(q))])} {ARROW} {q['names'][other(q)]}", q["names"][other(q)]), (0.0, 1.0, 1.0, 0.0)),
        "describes nothing listed": (lambda q: tagged_completion("a huge thing", truth(q)), (1.0, 0.0, 0.0, None)),
    }
    for what, (write, want) in cases.items():
        monkeypatch.setattr(P, "_run", fake(write))
        for long in (False, True):
            r = P.eval_reading(None, None, n=9, long=long)
            assert (r["reading"], r["think_describes_image"], r["think_listed"], r["copy_given_listed"]) == want, (what, long, r)


@pytest.mark.parametrize("seed", range(3))
def test_restated_thinks_copy_every_line_then_the_matching_one(seed):
    "Compact reading with `restate`: description; every prompt line in order; the matching line. Long layout: unchanged."
    rng = np.random.default_rng(seed)
    for _ in range(30):
        s = draw_scene(rng, str(rng.choice(["single", "count", "composite"])))
        qa = reading_qa(s, rng, n_classes=4, long=False, restate=True)
        if qa is None: continue
        lines = [l[2:] for l in qa["question"].split("\n") if l.startswith("- ") and f" {ARROW} " in l]
        parts = qa["think"].split("; ")
        desc = compact_definition(scene_attributes(s))
        assert parts == [desc] + lines + [f"{desc} {ARROW} {qa['truth']}"] and parts[-1] in lines
        long = reading_qa(s, np.random.default_rng(seed), n_classes=4, long=True, restate=True)
        assert "; " not in long["think"]
    e = text_reading_example(rng, 3, restate=True, image_line=False)
    lines = [l[2:] for l in e["question"].split("\n") if l.startswith("- ")]
    think = parse_completion(e["completion"]).think.strip()
    assert not e["question"].startswith("Image:") and e["completion"].startswith(e["given"] + "; ")
    assert think.split("; ")[1:-1] == lines and think.split("; ")[-1] in lines


def test_sft_batch_does_not_train_the_given_start():
    _, proc = load_pretrained_base()
    rng, tok = np.random.default_rng(1), proc.tokenizer
    ex = [text_reading_example(rng, 3, image_line=False), worded_reading_qa(rng, image_line=False, restate=True),
          text_reading_example(rng, 2)]                         # the last has nothing given
    b = sft_batch(proc, None, [e["question"] for e in ex], [e["completion"] for e in ex], given=[e["given"] for e in ex])
    for e, lab in zip(ex, b["labels"]):
        assert tok.decode(lab[lab != -100]) == e["completion"][len(e["given"]):] + "<|im_end|>"
    with pytest.raises(ValueError, match=r"given\[0\]"):
        sft_batch(proc, None, [ex[0]["question"]], [ex[0]["completion"]], given=["<think> something else"])


def test_restate_without_image_line_builds_and_changes_training(tmp_path):
    "The two options reach stage 0 (trained and evaluated with the given start), the replay and the reading steps."
    from safetensors.torch import load_file
    cfg = dict(size="test", steps=2, vision_steps=0, probe_weight=0.0, reading_share=1.0, long_reading_share=0.0,
               batch_size=2, text_steps=2, text_batch_size=4, text_eval_every=2, text_replay_batch_size=2,
               eval_every=0, eval_n=0, synthmed_n=0)
    a = build_pretrained_base(tmp_path / "a", config=PretrainConfig(**cfg), log=None)
    b = build_pretrained_base(tmp_path / "b", config=PretrainConfig(**cfg, restate=True, text_image_line=False), log=None)
    m = json.loads((b / "manifest.json").read_text())
    assert m["config"]["restate"] and not m["config"]["text_image_line"]
    ev = m["curves"]["text"]["evals"]
    assert len(ev) == 1 and 0 <= ev[0]["accuracy"] <= ev[0]["valid"] <= 1
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)

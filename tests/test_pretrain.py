"""Perception pre-training: bit-for-bit reproducibility at a toy budget, the committed base's manifest, scene invariants."""
import json, shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from vrft_aug.core import parse_completion
from vrft_aug.pretrain import (PretrainConfig, SCENE_KINDS, build_pretrained_base, draw_scene, question_kinds, scene_qa,
                               target_text, tiny_base_path, verify_base, load_pretrained_base, messages, TINY_BASE_FILES)
from vrft_aug.tiny import generate

TOY = PretrainConfig(warm_steps=2, warm_batch=4, sft_steps=2, sft_batch=4, eval_per_kind=0)


def test_toy_build_is_bit_for_bit(tmp_path):
    a = build_pretrained_base(tmp_path / "a", seed=0, config=TOY, log=None)
    b = build_pretrained_base(tmp_path / "b", seed=0, config=TOY, log=None)
    c = build_pretrained_base(tmp_path / "c", seed=1, config=TOY, log=None)
    ha, hb, hc = (verify_base(p)["sha256"] for p in (a, b, c))
    assert set(ha) == set(TINY_BASE_FILES)
    assert ha == hb                                    # same seed, same bytes
    assert ha["model.safetensors"] != hc["model.safetensors"]   # another seed, other weights
    assert ha["tokenizer.json"] == hc["tokenizer.json"]         # the tokenizer does not depend on the seed
    m = json.loads((a / "manifest.json").read_text())
    assert m["seed"] == 0 and m["config"]["warm_steps"] == 2 and m["seconds"]["total"] > 0


def test_committed_base_matches_its_manifest():
    path = tiny_base_path()
    m = verify_base(path)
    assert set(TINY_BASE_FILES) <= set(m["sha256"])
    assert m["config"]["warm_steps"] > 0 and m["config"]["sft_steps"] > 0
    assert m["seconds"]["total"] <= 20 * 60 * 2, m["seconds"]   # 20 min budget (x2 slack for a shared machine)
    assert sum(f.stat().st_size for f in path.iterdir()) < 5_000_000
    model, proc = load_pretrained_base()
    rng = np.random.default_rng(7)
    scenes = [draw_scene(rng, k) for k in SCENE_KINDS for _ in range(3)]
    qas = [scene_qa(s, rng) for s in scenes]
    outs = generate(model, proc, [s.image for s in scenes], [messages(q["question"]) for q in qas], max_new_tokens=48)
    assert sum(parse_completion(o).well_formed for o in outs) >= 8, outs


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
    with pytest.raises(ValueError, match="sft_steps"): build_pretrained_base(tmp_path, config=PretrainConfig(sft_steps=-1))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(SCENE_KINDS))
def test_scene_answers_follow_the_drawing(seed, kind):
    rng = np.random.default_rng(seed)
    s = draw_scene(rng, kind)
    for qk in question_kinds(s):
        qa = scene_qa(s, rng, qk)
        p = parse_completion(target_text(qa))
        assert p.well_formed and p.answer == qa["answer"]
        if qk == "count": assert int(qa["answer"]) == sum(o.colour == s.focus for o in s.objects)
        if qk == "total": assert int(qa["answer"]) == len(s.objects)
        if qk == "box": assert qa["answer"] in {"[" + ", ".join(map(str, o.box)) + "]" for o in s.objects}
        if qk == "colour": assert qa["answer"] in {o.colour for o in s.objects}

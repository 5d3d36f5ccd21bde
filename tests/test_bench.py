"""The benchmark suite runs: every script's --quick mode (gpu_check's --toy) writes JSON with the expected keys and
positive numbers. No timing is asserted (the machine is shared); the fast tests check the pieces the GPU check relies
on (the 3B configuration, the padded tokenizer) and the helpers."""
import json, math, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

def _run(script: str, tmp_path, *args, timeout=600) -> dict:
    out = tmp_path / f"{Path(script).stem}.json"
    r = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)], capture_output=True, text=True,
                       cwd=ROOT, timeout=timeout)
    assert r.returncode == 0, f"{script} {args} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return json.loads(out.read_text())

def _positive(x, where=""):
    assert isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0, f"{where}: {x!r}"

def _machine(res):
    for k in ("machine_start", "machine_end"):
        m = res[k]
        assert m["cpu_count"] >= 1 and len(m["loadavg"]) == 3 and m["torch"] and m["trl"], m

@pytest.mark.slow
def test_overhead_quick(tmp_path):
    res = _run("overhead.py", tmp_path, "--quick")
    _machine(res)
    variants = ("grpo", "vrft", "vrft_imitation", "vrft_unshared", "vrft_imitation_unshared")
    assert res["settings"]["model"] == "tiny-base" and res["settings"]["prompt"] == "knowledge"
    assert res["settings"]["prompt_tokens"] > 300                   # the knowledge prompt of the CPU scale
    for v in variants:
        assert res["steps_measured"][v] >= 1
        for key in ("median_wall_s", "median_cpu_s"): _positive(res[key][v], f"{key}[{v}]")
        sp = res["split_median_s"][v]
        _positive(sp["step_s"]); _positive(sp["generation_s"], f"generation of {v}"); _positive(sp["update_s"])
        assert sp["scoring_s"] >= 0 and sp["other_prep_s"] >= 0
        assert sp["generation_s"] < sp["step_s"]
    for v in variants[1:]:
        for key in ("wall_ratio_of_medians", "wall_median_round_ratio", "cpu_ratio_of_medians", "cpu_median_round_ratio"):
            _positive(res[key][v], f"{key}[{v}]")
    assert res["targets"] == {"vrft": 0.85, "vrft_imitation": 0.95}
    assert all(isinstance(res["target_met"][v], bool) for v in res["targets"])
    sweep = res["prompt_sweep"]
    assert [p["prompt"] for p in sweep] == ["plain", "knowledge"] and sweep[0]["prompt_tokens"] < sweep[1]["prompt_tokens"]
    for p in sweep: _positive(p["cpu_median_round_ratio"]["vrft"]); assert p["steps_measured"] >= 1
    png = tmp_path / "overhead.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

def test_smoke_runs_write_to_a_temporary_folder():
    "A --quick / --toy run without --out never writes beside the committed results."
    import tempfile
    from common import RESULTS, result_path
    assert result_path("overhead") == RESULTS / "overhead.json"
    quick = result_path("overhead", smoke=True)
    assert quick.name == "overhead_quick.json" and Path(tempfile.gettempdir()) in quick.parents and RESULTS not in quick.parents
    assert result_path("overhead", True, tmp := Path("elsewhere.json")) == tmp
    for script in ("overhead.py", "gpu_check.py", "scaling.py", "data.py", "eval_throughput.py", "pretrain_probe.py"):
        text = (BENCH / script).read_text()
        assert "result_path(" in text and "_quick.json\"" not in text, script

@pytest.mark.slow
def test_scaling_quick(tmp_path):
    res = _run("scaling.py", tmp_path, "--quick")
    _machine(res)
    pts = res["points"]
    assert {(p["G"], p["completion_len"], p["image_size"]) for p in pts} == {(2, 32, 56), (4, 32, 56), (4, 16, 56)}
    for p in pts:
        for k in ("median_step_s", "median_cpu_s", "peak_rss_mb", "rss_before_train_mb", "prompt_tokens"):
            _positive(p[k], k)
        assert p["peak_rss_mb"] >= p["rss_before_train_mb"] * 0.99
        for sp in (p["split_s"], p["split_cpu_s"]): _positive(sp["generation_s"]); _positive(sp["update_s"])
        assert p["tokens_generated_per_step"] == p["G"] * p["completion_len"]
    assert res["dominant_at_base"] in ("generation_s", "scoring_s", "other_prep_s", "update_s")
    assert abs(sum(res["base_split_fraction"].values()) - 1) < 1e-6
    png = Path(res["png"])
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["table"].count("\n") == len(pts) + 1

@pytest.mark.slow
def test_eval_throughput_quick(tmp_path):
    res = _run("eval_throughput.py", tmp_path, "--quick")
    _machine(res)
    for b in ("1", "16", "32"):
        _positive(res["samples_per_s"][b], f"samples/s at batch {b}")
        _positive(res["median_seconds"][b]); _positive(res["mean_completion_tokens"][b])
    assert res["speedup_vs_batch1"]["1"] == 1.0

@pytest.mark.slow
def test_data_quick(tmp_path):
    res = _run("data.py", tmp_path, "--quick")
    _machine(res)
    assert set(res["synthmed_images_per_s"]) == {"cells@56", "fundus@56", "lesion@56"}
    for v in res["synthmed_images_per_s"].values(): _positive(v)
    for v in res["prompts_per_s"].values(): _positive(v)
    for k in ("chat_renders_per_s", "processor_rows_per_s", "dataset_rows_per_s", "to_trl_samples_per_s", "training_step_s"):
        _positive(res[k], k)
    _positive(res["image_preprocess_per_s"]["56"])
    assert set(res["fraction_of_step"]) == {"synthmed_draw", "prompt_build", "to_trl", "chat_render", "image_preprocess",
                                            "processor_call", "dataset_row_fetch"}
    for k, v in res["fraction_of_step"].items(): _positive(v, k)
    assert res["all_within_target"] == all(v <= 0.05 for v in res["fraction_of_step"].values())
    assert list(res["by_image_size"]) == ["56"] and res["by_image_size"]["56"]["training_step_s"] == res["training_step_s"]

@pytest.mark.slow
def test_gpu_check_toy(tmp_path):
    res = _run("gpu_check.py", tmp_path, "--toy")
    assert res["settings"]["toy"] and not res["settings"]["cuda"]
    assert res["model"]["tokenizer_len"] == res["model"]["vocab_size"] == 4096
    assert 0 < res["model"]["lora_trainable_parameters"] < res["model"]["parameters"]
    for phase, kinds in (("full", ("grpo", "vrft", "vrft_unshared")), ("full_imitation", ("grpo", "vrft_imitation")),
                         ("lora", ("grpo", "vrft"))):
        r = res[phase]
        _positive(r["peak_mem_gb"], phase)
        for k in kinds:
            assert r[k]["steps_measured"] >= 1
            _positive(r[k]["median_step_s"], f"{phase}/{k}"); _positive(r[k]["generated_tokens_per_s"], f"{phase}/{k}")
        _positive(r[f"{kinds[1]}_over_grpo"])
    for k in ("full", "lora", "imitation", "full_unshared"): _positive(res["vrft_over_grpo"][k])

def test_gpu_check_needs_cuda_without_toy(tmp_path):
    import torch
    if torch.cuda.is_available(): pytest.skip("a GPU is present: the full check would run")
    r = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--out", str(tmp_path / "x.json")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode != 0 and "no CUDA device" in r.stderr + r.stdout and not (tmp_path / "x.json").exists()

# ----------------------------------------------------------------------------------------------------- fast pieces
def test_qwen25_vl_3b_config_has_3b_parameters():
    "The GPU check's model, built on the meta device (no memory), has Qwen2.5-VL-3B's size and shapes."
    import torch
    import gpu_check as g
    from transformers import Qwen2_5_VLForConditionalGeneration
    tok = g.padded_tokenizer()
    assert len(tok) == g.QWEN25_VL_3B_VOCAB == 151936
    cfg = g.vl_config(tok, g.QWEN25_VL_3B_TEXT, g.QWEN25_VL_3B_VISION)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    assert 3.70e9 < n < 3.80e9, n                                   # Qwen2.5-VL-3B-Instruct: 3.75 B parameters
    assert model.get_input_embeddings().weight.shape == (151936, 2048)
    assert model.lm_head.weight is model.get_input_embeddings().weight  # tied, as in the 3B release
    assert len(model.model.language_model.layers) == 36 and len(model.model.visual.blocks) == 32
    attn = model.model.language_model.layers[0].self_attn
    assert attn.k_proj.out_features == 2 * 128 and attn.q_proj.out_features == 16 * 128
    assert cfg.vision_config.fullatt_block_indexes == [7, 15, 23, 31] and cfg.vision_config.out_hidden_size == 2048

def test_padded_tokenizer_round_trip_and_special_ids():
    import gpu_check as g
    tok = g.padded_tokenizer(4096)
    assert len(tok) == 4096
    text = "<think> the nucleus is dark </think><answer> lymphocyte </answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and max(ids) < 4096
    for t in ("<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|vision_start|>", "<|endoftext|>"):
        assert 0 <= tok.convert_tokens_to_ids(t) < 4096
    filler = tok.convert_tokens_to_ids("\u0120fill0")
    assert tok.decode([filler]) == " fill0"
    with pytest.raises(ValueError, match="vocab_size=10"): g.padded_tokenizer(10)

def test_points_and_split_helpers():
    import scaling
    from common import split_step, median
    pts = scaling.points(scaling.AXES)
    assert len(pts) == len({tuple(p.values()) for p in pts}) == 11 and scaling.BASE in pts
    assert all(sum(p[k] != scaling.BASE[k] for k in p) <= 1 for p in pts)   # one knob at a time
    sp = lambda w, c: dict(wall=w, cpu=c)
    rec = dict(step_s=1.0, cpu_s=0.5, spans={"_prepare_inputs": sp(0.7, 0.3), "transformers.generate": sp(0.5, 0.2),
                                             "_calculate_rewards": sp(0.1, 0.05)})
    assert split_step(rec) == dict(step_s=1.0, generation_s=0.5, scoring_s=0.1, other_prep_s=pytest.approx(0.1),
                                   update_s=pytest.approx(0.3))
    assert split_step(rec, "cpu") == dict(step_s=0.5, generation_s=0.2, scoring_s=0.05, other_prep_s=pytest.approx(0.05),
                                          update_s=pytest.approx(0.2))
    assert median([3, None, 1, 2]) == 2 and math.isnan(median([]))

@pytest.mark.slow
def test_pretrain_probe_quick(tmp_path):
    res = _run("pretrain_probe.py", tmp_path, "--quick", "--threads", "1")
    assert res["steps"] == 3 and [r["probe_weight"] for r in res["runs"]] == [0.0, 1.0]
    for r in res["runs"]:
        _positive(r["answer_loss_last25"]); _positive(r["seconds"]); assert 0 <= r["colour_accuracy"] <= 1

def test_every_mutant_still_applies():
    "bench/mutants.py: each listed bug is an exact replacement of text that occurs once in the current library."
    r = subprocess.run([sys.executable, str(BENCH / "mutants.py"), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    import mutants
    assert len(mutants.MUTANTS) >= 10 and all(m.tests and m.tests[0].startswith("tests/") for m in mutants.MUTANTS)

def test_reading_probe_examples():
    "Exactly one definition line matches the image's description, and the target answers with the name after it."
    import numpy as np
    from reading_probe import make_example
    rng = np.random.default_rng(0)
    names = iter(f"nm{i}" for i in range(10_000))
    for k in (2, 3, 4):
        for think_line in (False, True):
            q, target, name = make_example(rng, k, lambda r: next(names), think_line, "→")
            image = q.split("\n")[0].removeprefix("Image: ").rstrip(".")
            lines = [l for l in q.split("\n") if l.startswith("- ")]
            assert len(lines) == k and [l for l in lines if l.startswith(f"- {image} →")] == [f"- {image} → {name}"]
            assert target.endswith(f"<answer> {name} </answer>") and (f"{image} → {name}" in target) == think_line

def test_reading_probe_quick(tmp_path):
    res = _run("reading_probe.py", tmp_path, "--quick", "--think-line", "--lookup", "2")
    _machine(res)
    assert res["settings"]["think_line"] and res["settings"]["lookup"] == 2 and len(res["curve"]) == 2
    for p in res["curve"]:
        _positive(p["loss"]); assert 0 <= p["accuracy"] <= p["valid"] <= 1, p    # a right answer is a listed name

def test_reading_probe_own_think_restate_quick(tmp_path):
    "No `Image:` line, the think's description given and the definitions restated: the probe trains and scores that form."
    res = _run("reading_probe.py", tmp_path, "--quick", "--think-line", "--own-think", "--restate")
    assert res["settings"]["own_think"] and res["settings"]["restate"]
    for p in res["curve"]:
        _positive(p["loss"]); assert 0 <= p["accuracy"] <= p["valid"] <= 1, p

def test_own_think_and_restate_examples():
    import numpy as np
    from reading_probe import make_example, own_think, restate
    rng = np.random.default_rng(1)
    q, c, name = make_example(rng, 3, lambda r: f"nm{r.integers(10**6)}", True, "→")
    q2, given, rest = own_think(q, restate(q, c, "→"), "→")
    assert q2 == q.split("\n", 1)[1] and given == "<think> " + q.split("\n")[0][len("Image: "):-1]
    lines = [l[2:] for l in q.split("\n") if l.startswith("- ")]
    assert rest == "; " + "; ".join(lines) + f"; {given[len('<think> '):]} → {name} </think><answer> {name} </answer>"

def test_reading_finetune_quick(tmp_path):
    "Continuing the committed base on reading: a score before the first step and after, each split into its parts."
    res = _run("reading_finetune.py", tmp_path, "--quick", "--worded", "2", "--own-think", "--restate")
    _machine(res)
    assert [p["step"] for p in res["curve"]] == [0, 2, 4]
    for p in res["curve"]:
        assert all(0 <= p[k] <= 1 for k in ("reading", "think_describes_image", "think_listed")), p
        assert p["copy_given_listed"] is None or 0 <= p["copy_given_listed"] <= 1, p
    assert all(p["loss"] > 0 for p in res["curve"][1:])

def test_vision_probe_quick(tmp_path):
    res = _run("vision_probe.py", tmp_path, "--quick")
    _machine(res)
    assert res["settings"]["object_term"] and len(res["curve"]) == 2
    for p in res["curve"]:
        _positive(p["loss"])
        assert all(0 <= p[k] <= 1 for k in ("token_colour", "token_shape", "object_shape", "object_size")), p

def test_grpo_from_base_quick(tmp_path):
    "Two GRPO steps from the committed base through the pipeline: a curve point before the first step and after each."
    res = _run("grpo_from_base.py", tmp_path, "--quick")
    _machine(res)
    (s,) = res["seeds"]
    assert [p["step"] for p in s["curve"]] == [0, 1, 2]
    assert all(0 <= p["accuracy"] <= 1 and 0 <= p["well_formed"] <= 1 for p in s["curve"]), s["curve"]
    assert s["curve"][0]["train_seconds"] == 0 and s["curve"][-1]["train_seconds"] > 0
    _positive(s["seconds_per_step"]); assert len(s["reward"]) == 2
    assert res["summary"]["base_accuracy"] == [s["curve"][0]["accuracy"]]

@pytest.mark.slow
def test_warm_start_quick(tmp_path):
    "One warm-start step from the committed base, scored under each prompt the presets use."
    res = _run("warm_start.py", tmp_path, "--quick")
    _machine(res)
    (r,) = res["runs"]
    assert r["steps"] == 1 and r["trained_on"] == "plain+knowledge" and sorted(r["scores"]) == sorted(res["settings"]["eval_prompts"])
    assert all(0 <= s["accuracy"] <= 1 and 0 <= s["well_formed"] <= 1 for s in r["scores"].values()), r
    _positive(r["train_seconds"])

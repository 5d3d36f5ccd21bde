"""Exact resume on the real CPU configuration: the committed tiny base, the vrft preset (SFT warm start, then GRPO),
small step counts. One run is killed (a real SIGKILL, at exact places: tests/scripts/train_killed_at.py) again and
again, each time resumed with --resume, and must end with the uninterrupted run's training logs, weights, metrics and
completions; a run with another seed must not, so the comparison can tell runs apart."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KILLER = ROOT / "tests" / "scripts" / "train_killed_at.py"
# 24 training images, 8 per SFT step: 3 steps per epoch, so SFT checkpoint-4 lies inside the second epoch
ARGS = ["--preset", "vrft", "--n-train", "24", "--n-test", "8", "--eval-batch-size", "8", "--save-steps", "4",
        "--set", "stages.0.steps=10", "--set", "stages.0.batch_size=8",
        "--set", "stages.1.steps=6", "--set", "stages.1.batch_size=16", "--set", "stages.1.learning_rate=1e-3",
        "--curve-every", "2", "--curve-n", "8"]   # test-curve rows in the log history must survive the kills too
# what changes between two identical runs: wall-clock timings, and the summary line of each (resumed) trainer.train call
CLOCK = {"step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos",
         "test/seconds"}

def _train(out, point="none", *extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("IN_TEST", None)
    return subprocess.run([sys.executable, str(KILLER), point, "--", *ARGS, "--output-dir", str(out), *extra],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)

def _run_folder(out): return Path(out) / "vrft" / "synthmed-cells" / "seed0"

def _outcome(out):
    "Everything a resume must reproduce: per-step training logs of each stage, final weights, metrics, completions."
    from safetensors.torch import load_file
    m = json.loads(next(Path(out).rglob("metrics.json")).read_text())
    logs = []
    for s in m["stages"]:
        hist = json.loads((Path(s) / "done.json").read_text())["log_history"]
        logs.append([{k: v for k, v in h.items() if k not in CLOCK} for h in hist if "train_runtime" not in h])
    weights = load_file(str(Path(m["final_model"]) / "model.safetensors"))
    return dict(logs=logs, weights=weights, metrics=m["metrics"], examples=m["examples"], resumed=m["resumed"])

def _same_weights(a, b): return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)

@pytest.mark.slow
def test_killed_again_and_again_resumes_to_the_uninterrupted_run(tmp_path):
    ref = _train(tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-3000:]
    a = _outcome(tmp_path / "ref")
    assert a["resumed"] == []
    grpo = [h for h in a["logs"][1] if "reward" in h]
    assert len(grpo) == 6 and len({h["reward"] for h in grpo}) > 1, grpo   # sampled rewards move from step to step
    assert [h["step"] for h in a["logs"][1] if "test/accuracy" in h] == [0, 2, 4, 6], a["logs"][1]

    other = _train(tmp_path / "seed1", "none", "--seed", "1")
    assert other.returncode == 0, other.stderr[-3000:]
    b = json.loads(next((tmp_path / "seed1").rglob("metrics.json")).read_text())
    assert b["examples"] != a["examples"], "another seed gives the same completions: this comparison could not fail"

    out = tmp_path / "killed"
    chain = [("sft-checkpoint:8", "while SFT checkpoint-8 is written (second epoch)"),
             ("grpo-step:5", "in GRPO between checkpoint-4 and checkpoint-6"),
             ("grpo-checkpoint:6", "right after the last GRPO checkpoint"),
             ("final", "while the GRPO stage's final model is written"),
             ("evaluate", "during evaluation"),
             ("metrics", "while metrics.json is written")]
    for i, (point, where) in enumerate(chain):
        r = _train(out, point, *(["--resume"] if i else []))
        assert r.returncode == -9, f"{point}: expected a SIGKILL {where}, got rc={r.returncode}: {r.stderr[-2000:]}"
        assert not (_run_folder(out) / "metrics.json").exists(), f"killed {where}, yet metrics.json exists"
        if i == 0:   # without --resume (or --overwrite) an existing run folder is refused
            again = _train(out)
            assert again.returncode == 2 and "--resume" in again.stderr, again.stderr[-2000:]
        if point == "final":
            stage = next(out.glob("_stages/1-grpo-*"))
            assert (stage / "final.tmp").is_dir() and not (stage / "final").exists() and not (stage / "done.json").exists()
    done = _train(out, "none", "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    c = _outcome(out)
    for stage, (x, y) in enumerate(zip(a["logs"], c["logs"])):
        for h, k in zip(x, y):
            assert h == k, f"stage {stage}, step {h.get('step')}: uninterrupted {h} != resumed {k}"
        assert len(x) == len(y), (stage, len(x), len(y))
    assert _same_weights(a["weights"], c["weights"]), "the resumed run's final weights differ"
    assert c["metrics"] == a["metrics"], (a["metrics"], c["metrics"])
    assert c["examples"] == a["examples"]
    # both stages were resumed from a checkpoint, and on CPU nothing is left unrestored
    assert [(r["stage"], r["not_restored"]) for r in c["resumed"]] == [(0, []), (1, [])], c["resumed"]
    assert c["resumed"][0]["checkpoint"] == "checkpoint-4"   # the half-written checkpoint-8 was not trusted
    assert not list(out.glob("_stages/*/final.tmp")) and not list(out.rglob("*.json.tmp"))

def _checkpoint(out, step, rng=True, state=True, ranks=1):
    c = out / f"checkpoint-{step}"; c.mkdir(parents=True)
    (c / "model.safetensors").write_bytes(b"w"); (c / "optimizer.pt").write_bytes(b"o")
    for r in range(ranks):
        if rng: (c / ("rng_state.pth" if ranks == 1 else f"rng_state_{r}.pth")).write_bytes(b"r")
    if state is True: (c / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    elif state: (c / "trainer_state.json").write_text(state)
    return c

def test_last_checkpoint_skips_half_written_ones(tmp_path):
    from vrft_aug.pipeline import last_checkpoint
    assert last_checkpoint(tmp_path) is None
    good = _checkpoint(tmp_path, 4)
    _checkpoint(tmp_path, 8, rng=False, state=False)     # killed after the weights and optimizer
    _checkpoint(tmp_path, 12, rng=True, state=False)     # killed before trainer_state.json
    _checkpoint(tmp_path, 16, state='{"global_st')       # killed while trainer_state.json was written
    _checkpoint(tmp_path, 20, state='{"global_step": 19}')  # a state that is not this checkpoint's
    (tmp_path / "checkpoint-24.tmp").mkdir()              # not a checkpoint name
    assert last_checkpoint(tmp_path) == good
    assert len(list(tmp_path.glob("checkpoint-*"))) == 6  # nothing removed unless asked
    assert last_checkpoint(tmp_path, remove_incomplete=True) == good
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-24.tmp", "checkpoint-4"]
    # several processes: every rank's RNG file must be there
    multi = tmp_path / "multi"
    two = _checkpoint(multi, 2, ranks=2)
    (_checkpoint(multi, 4, ranks=2) / "rng_state_1.pth").unlink()
    assert last_checkpoint(multi, num_processes=2) == two and last_checkpoint(multi, num_processes=1) is None

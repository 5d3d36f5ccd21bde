"""GRPO straight from the committed tiny base, no SFT warm start (issue 12, target 5): does test accuracy on SynthMed
cells rise within 3 minutes of training on 2 cores?

One GRPO stage (accuracy + format rewards, the CPU scale's GRPO settings) from `tiny-base`, run by the library's own
pipeline with its test curve on (`curve_every`, `curve_n`): greedy accuracy on the first `curve_n` test images before
the first step and every `curve_every` steps. Training seconds are the trainer's runtime less the time the curve's
measurements took. Per seed it records the curve, the share of prompt groups whose rewards were all equal (no
gradient), the gain over the base at the last point within `--budget` training seconds, and the first step at which
the curve reaches 70%; then the mean over seeds.

    .venv/bin/python bench/grpo_from_base.py --quick                   # smoke: 2 steps, 4 test images, one seed, tmp output
    OMP_NUM_THREADS=2 .venv/bin/python bench/grpo_from_base.py --prompt plain       # bench/results/grpo_from_base_plain.json
    OMP_NUM_THREADS=2 .venv/bin/python bench/grpo_from_base.py --prompt knowledge   # ..._knowledge.json
"""
from __future__ import annotations
import argparse, json, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, quiet, result_path, write_json  # noqa: E402

def one_seed(seed: int, prompt: str, steps: int, every: int, n: int, lr: float, root: Path, quick: bool,
             model: str = "tiny-base") -> dict:
    import yaml
    from vrft_aug.pipeline import resolve_config, run, stage_dirs
    root.mkdir(parents=True, exist_ok=True); preset = root / "grpo-from-base.yaml"
    preset.write_text(yaml.safe_dump(dict(description="GRPO from the base, no warm start", prompt=prompt,
                                          stages=[dict(kind="grpo", rewards=dict(accuracy=1.0, format=1.0))])))
    o = {"model": model, "dataset": "synthmed-cells", "seed": seed, "output_dir": str(root / "runs"), "curve_every": every, "curve_n": n,
         "n_test": n, "stage_defaults.grpo.steps": steps, "stage_defaults.grpo.learning_rate": lr, "save_steps": max(steps, 1)}
    if quick: o.update({"n_train": 16, "eval_batch_size": 4, "stage_defaults.grpo.batch_size": 8,
                        "stage_defaults.grpo.num_generations": 4, "stage_defaults.grpo.max_completion_length": 8,
                        "eval_max_new_tokens": 8})
    cfg = resolve_config(str(preset), "cpu", o)
    t0 = time.perf_counter()
    run(cfg, progress=False)
    done = json.loads((stage_dirs(cfg)[0] / "done.json").read_text())
    pts = [h for h in done["log_history"] if "test/accuracy" in h]
    rewards = [h["reward"] for h in done["log_history"] if "reward" in h]
    zero_std = [h["frac_reward_zero_std"] for h in done["log_history"] if "frac_reward_zero_std" in h]  # groups with no signal
    measuring = sum(h["test/seconds"] for h in pts)
    # training seconds: the trainer's train_runtime (which includes the curve's measurements) less those measurements,
    # spread evenly over the steps (time is not logged per step)
    runtime = next(h["train_runtime"] for h in reversed(done["log_history"]) if "train_runtime" in h)
    per_step = (float(runtime) - measuring) / max(1, done["steps"])
    curve = [dict(step=h["step"], train_seconds=round(h["step"] * per_step, 1), accuracy=h["test/accuracy"],
                  well_formed=h["test/well_formed"]) for h in pts]
    return dict(seed=seed, curve=curve, reward=rewards, frac_reward_zero_std=round(sum(zero_std) / max(1, len(zero_std)), 4),
                stage_seconds=done["seconds"], train_runtime=float(runtime),
                measuring_seconds=round(measuring, 1),
                seconds_per_step=round(per_step, 3), wall_seconds=round(time.perf_counter() - t0, 1))

def summarise(seeds: list[dict], budget: float) -> dict:
    import numpy as np
    gains, reach = [], []
    for s in seeds:
        c = s["curve"]; base = c[0]["accuracy"]
        within = [p for p in c if p["train_seconds"] <= budget]
        s["gain_within_budget"] = round(within[-1]["accuracy"] - base, 4)
        s["step_at_budget"] = within[-1]["step"]
        s["first_step_at_70"] = next((p["step"] for p in c if p["accuracy"] >= 0.7), None)
        gains.append(s["gain_within_budget"]); reach.append(s["first_step_at_70"])
    return dict(mean_gain_within_budget=round(float(np.mean(gains)), 4), gains=gains, first_step_at_70=reach,
                base_accuracy=[s["curve"][0]["accuracy"] for s in seeds])

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompt", default="plain", choices=["plain", "knowledge", "shuffled-knowledge"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=500, help="GRPO steps per seed")
    ap.add_argument("--curve-every", type=int, default=25)
    ap.add_argument("--curve-n", type=int, default=100, help="test images per curve point")
    ap.add_argument("--lr", type=float, default=3e-5, help="GRPO learning rate (the CPU scale's until 2026-12-02, now 2e-4; "
                    "groups with equal rewards give no gradient at any rate)")
    ap.add_argument("--budget", type=float, default=180.0, help="training seconds the gain is read at")
    ap.add_argument("--model", default="tiny-base", help="the base: tiny-base (committed) or a folder from build-tiny --pretrain")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 steps, 4 test images, one seed, tmp output")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    quiet()
    if a.quick: a.seeds, a.steps, a.curve_every, a.curve_n = "0", 2, 1, 4
    out = result_path(f"grpo_from_base_{a.prompt}", a.quick, a.out)
    res = dict(settings=dict(prompt=a.prompt, steps=a.steps, curve_every=a.curve_every, curve_n=a.curve_n, lr=a.lr,
                             budget=a.budget, model=a.model, dataset="synthmed-cells", rewards="accuracy 1.0 + format 1.0"),
               machine_start=machine(), seeds=[])
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in a.seeds.split(",")]:
            res["seeds"].append(one_seed(seed, a.prompt, a.steps, a.curve_every, a.curve_n, a.lr, Path(tmp) / f"s{seed}", a.quick,
                                       a.model))
            print(json.dumps({k: v for k, v in res["seeds"][-1].items() if k != "reward"}), flush=True)
            write_json(res, out)
    res["summary"] = summarise(res["seeds"], a.budget)
    res["machine_end"] = machine()
    write_json(res, out)
    print(json.dumps(res["summary"]), f"-> {out}")
    return res

if __name__ == "__main__":
    main()

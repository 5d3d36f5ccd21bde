"""How a GRPO step's time and memory grow with the group size G, the completion length and the image size.

From a base point (G = 4 completions of 32 tokens for one 56 px SynthMed image per step), one knob moves at a time:
G in 2..16, completion length in 16..256 tokens, image side in 56..448 px, on the tiny model (built offline, with a
processor that keeps images up to 448 px). Each point runs in a fresh subprocess (`--point`), so its peak resident
memory (VmHWM, i.e. `ru_maxrss`) is its own: Python's tracemalloc does not see torch's allocations. A point runs one
warm-up step and then measured steps through `VRFTTrainer` (imitation off, i.e. GRPO); every completion has exactly
the stated length (min_new_tokens). Each step is split with TRL's own profiling spans into generation
(`transformers.generate`), scoring (`_calculate_rewards`), other input preparation (prompt and image processing,
log-probs of the old policy, advantages) and the update (loss forward, backward, optimizer step).

Writes a JSON (every point), a PNG next to it (time split and peak memory against each knob) and prints a table.

    .venv/bin/python bench/scaling.py --quick     # 3 points, 1 measured step each (smoke test)
    .venv/bin/python bench/scaling.py             # 11 points, 3 measured steps each
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (result_path, Spans, grpo_args, machine, median, quiet, reward_funcs, rss_mb, silence_trainer,  # noqa: E402
                    split_step, step_timer, tiny_model, train_dataset, write_json)

BASE = dict(G=4, completion_len=32, image_size=56)
AXES = dict(G=[2, 4, 8, 16], completion_len=[16, 32, 64, 128, 256], image_size=[56, 112, 224, 448])
QUICK_AXES = dict(G=[2, 4], completion_len=[16, 32], image_size=[56])
PARTS = ("generation_s", "scoring_s", "other_prep_s", "update_s")

def run_point(model_dir, G: int, completion_len: int, image_size: int, steps: int, threads: int = 1) -> dict:
    "One point, in this process: warm-up step + `steps` measured steps; times, split and memory."
    import torch
    from vrft_aug.imitation import VRFTConfig, VRFTTrainer
    from vrft_aug.tiny import load_tiny_vlm
    quiet(); torch.set_num_threads(threads)
    proc = load_tiny_vlm(model_dir)[1]
    ds = train_dataset(8, image_size)
    funcs, weights = reward_funcs()
    with tempfile.TemporaryDirectory() as tmp, Spans() as spans:
        timer = step_timer(spans)
        args = VRFTConfig(**grpo_args(tmp, G=G, completion_len=completion_len, prompts_per_step=1, max_steps=steps + 1,
                                      reward_weights=weights))
        tr = silence_trainer(VRFTTrainer(model=str(model_dir), reward_funcs=funcs, args=args, train_dataset=ds,
                                         processing_class=proc, callbacks=[timer]))
        before = rss_mb()
        tr.train()
        after = rss_mb()
    measured = timer.steps[1:]
    split = {k: median([split_step(s)[k] for s in measured]) for k in ("step_s",) + PARTS}
    cpu = {k: median([split_step(s, "cpu")[k] for s in measured]) for k in ("step_s",) + PARTS}
    prompt_tokens = len(proc(text=[proc.apply_chat_template(ds[0]["prompt"], add_generation_prompt=True, tokenize=False)],
                             images=[ds[0]["image"]])["input_ids"][0])
    return dict(G=G, completion_len=completion_len, image_size=image_size, prompt_tokens=prompt_tokens,
                steps_measured=len(measured), median_step_s=split["step_s"],
                median_cpu_s=cpu["step_s"], split_s={k: split[k] for k in PARTS}, split_cpu_s={k: cpu[k] for k in PARTS},
                rss_before_train_mb=before["rss_mb"], peak_rss_mb=after["peak_rss_mb"],
                train_peak_over_start_mb=round(after["peak_rss_mb"] - before["rss_mb"], 1),
                tokens_generated_per_step=G * completion_len)

def points(axes: dict) -> list[dict]:
    "The base point plus one-knob-at-a-time moves, without duplicates."
    out = []
    for knob, values in axes.items():
        for v in values:
            p = {**BASE, knob: v}
            if p not in out: out.append(p)
    return out

def plot(res: dict, png: Path):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    axes = res["axes"]
    fig, ax = plt.subplots(2, len(axes), figsize=(4.2 * len(axes), 7), squeeze=False)
    labels = dict(G="completions per prompt (G)", completion_len="completion length (tokens)", image_size="image side (px)")
    for j, knob in enumerate(axes):
        rows = sorted([r for r in res["points"] if all(r[k] == BASE[k] for k in BASE if k != knob)], key=lambda r: r[knob])
        x = [r[knob] for r in rows]
        bottom = [0.0] * len(rows)
        for part in PARTS:
            y = [r["split_cpu_s"][part] for r in rows]
            ax[0, j].bar([str(v) for v in x], y, bottom=bottom, label=part[:-2].replace("_", " "))
            bottom = [b + v for b, v in zip(bottom, y)]
        ax[0, j].plot([str(v) for v in x], [r["median_cpu_s"] for r in rows], "k_", markersize=14, label="whole step")
        ax[0, j].set_title(f"step CPU time vs {knob}"); ax[0, j].set_ylabel("median CPU seconds per step")
        ax[0, j].set_xlabel(labels[knob])
        ax[1, j].plot(x, [r["peak_rss_mb"] for r in rows], "o-", label="peak RSS")
        ax[1, j].plot(x, [r["rss_before_train_mb"] for r in rows], "s--", label="RSS before training")
        ax[1, j].set_xscale("log", base=2); ax[1, j].set_xticks(x, [str(v) for v in x])
        ax[1, j].set_ylabel("MiB"); ax[1, j].set_xlabel(labels[knob]); ax[1, j].set_title(f"memory vs {knob}")
    ax[0, 0].legend(fontsize=8); ax[1, 0].legend(fontsize=8)
    m = res["machine_start"]
    fig.suptitle(f"tiny Qwen2.5-VL GRPO step on CPU ({m['cpu_count']} cores, {res['settings']['threads']} torch thread, "
                 f"load {m['loadavg'][0]}-{res['machine_end']['loadavg'][0]})", fontsize=10)
    fig.tight_layout(); fig.savefig(png, dpi=90); plt.close(fig)

def table(res: dict) -> str:
    lines = ["| G | completion | image px | prompt tokens | step wall s | step CPU s | generation | scoring | other prep "
             "| update | peak RSS MiB | RSS before MiB |", "|" + "---:|" * 12]
    for r in res["points"]:
        s = r["split_cpu_s"]
        lines.append(f"| {r['G']} | {r['completion_len']} | {r['image_size']} | {r['prompt_tokens']} | "
                     f"{r['median_step_s']:.3f} | {r['median_cpu_s']:.3f} | {s['generation_s']:.3f} | {s['scoring_s']:.4f} | "
                     f"{s['other_prep_s']:.3f} | {s['update_s']:.3f} | {r['peak_rss_mb']:.0f} | {r['rss_before_train_mb']:.0f} |")
    return "\n".join(lines)

def run(quick: bool = False, out=None, threads: int = 1) -> dict:
    out = result_path("scaling", quick, out)
    axes, steps = (QUICK_AXES, 1) if quick else (AXES, 3)
    res = dict(settings=dict(base=BASE, steps=steps, warmup_steps=1, threads=threads, size="test", prompts_per_step=1),
               axes=axes, machine_start=machine(), points=[])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = tiny_model(Path(tmp) / "tiny", "test", max_side=max(AXES["image_size"]))
        for p in points(axes):
            pj = Path(tmp) / "point.json"
            cmd = [sys.executable, __file__, "--point", str(p["G"]), str(p["completion_len"]), str(p["image_size"]),
                   "--model-dir", str(model_dir), "--steps", str(steps), "--threads", str(threads), "--out", str(pj)]
            r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if r.returncode != 0:
                raise RuntimeError(f"scaling point {p} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
            res["points"].append(json.loads(pj.read_text()))
            print(f"  point {p}: {res['points'][-1]['median_step_s']:.3f} s/step, "
                  f"peak {res['points'][-1]['peak_rss_mb']:.0f} MiB", flush=True)
    res["machine_end"], res["seconds"] = machine(), round(time.perf_counter() - t0, 1)
    base = next(r for r in res["points"] if all(r[k] == v for k, v in BASE.items()))
    tot = sum(base["split_cpu_s"].values()) or 1.0
    res["base_split_fraction"] = {k: base["split_cpu_s"][k] / tot for k in PARTS}   # CPU time: steadier under load
    res["dominant_at_base"] = max(PARTS, key=lambda k: base["split_cpu_s"][k])
    res["dominant_per_point"] = [dict(G=r["G"], completion_len=r["completion_len"], image_size=r["image_size"],
                                      dominant=max(PARTS, key=lambda k: r["split_cpu_s"][k]),
                                      fraction={k: r["split_cpu_s"][k] / (sum(r["split_cpu_s"].values()) or 1.0)
                                                for k in PARTS}) for r in res["points"]]
    png = out.with_suffix(".png"); out.parent.mkdir(parents=True, exist_ok=True)
    plot(res, png); res["png"] = str(png); res["table"] = table(res)
    write_json(res, out)
    return res

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 points, 1 measured step each (smoke test)")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/scaling.json; with --quick <tmp>/vrft_aug_bench/scaling_quick.json)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--point", nargs=3, type=int, metavar=("G", "LEN", "PX"), help="internal: run one point")
    ap.add_argument("--model-dir", type=Path, help="internal: the tiny model folder")
    ap.add_argument("--steps", type=int, default=3, help="internal: measured steps of a point")
    a = ap.parse_args(argv)
    if a.point:
        G, L, S = a.point
        write_json(run_point(a.model_dir, G, L, S, a.steps, a.threads), a.out); return
    res = run(a.quick, a.out, a.threads)
    print(res["table"])
    print(f"dominant term at the base point: {res['dominant_at_base']} "
          f"({ {k: round(v, 3) for k, v in res['base_split_fraction'].items()} })")
    print(f"load {res['machine_start']['loadavg']} -> {res['machine_end']['loadavg']}, {res['seconds']} s; plot {res['png']}")

if __name__ == "__main__":
    main()

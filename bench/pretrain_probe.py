"""Does the dense perception probe speed up learning to see? Colour questions on single-object scenes, from random init.

Trains the committed base's architecture (TINY_SIZES["base"], 16 image tokens) for --steps steps on
"What colour is the object?" with and without the probe (same seed, same data), and reports the answer loss
(mean over the last 25 steps) and greedy colour accuracy on 64 fresh scenes.

    OMP_NUM_THREADS=2 .venv/bin/python bench/pretrain_probe.py --steps 300
"""
import argparse, json, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import result_path  # noqa: E402
from vrft_aug.pretrain import (PretrainConfig, PerceptionProbe, _new_model, draw_scene, sft_batch, lm_loss, messages,
                               normalize_answer, parse_completion)
from vrft_aug.tiny import generate

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=300)
ap.add_argument("--lr", type=float, default=3e-3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--out", default=None, help="JSON output (default bench/results/pretrain_probe.json; with --quick "
                "<tmp>/vrft_aug_bench/pretrain_probe_quick.json)")
ap.add_argument("--quick", action="store_true", help="smoke mode: 3 steps, 8 test scenes")
args = ap.parse_args()
if args.quick: args.steps = 3
N_TEST = 8 if args.quick else 64
torch.set_num_threads(args.threads)
Q = "What colour is the object?"


def run(probe_weight: float) -> dict:
    cfg = PretrainConfig()
    with tempfile.TemporaryDirectory() as tmp: model, proc = _new_model(cfg, 0, Path(tmp))
    probe = PerceptionProbe(model) if probe_weight else None
    params = list(model.parameters()) + (list(probe.parameters()) if probe else [])
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    rng, losses, t0 = np.random.default_rng(0), [], time.perf_counter()
    model.train()
    for step in range(args.steps):
        scenes = [draw_scene(rng, "single") for _ in range(32)]
        b = sft_batch(proc, [s.image for s in scenes], [Q] * 32, [f"<answer>{s.objects[0].colour}</answer>" for s in scenes])
        loss = lm_loss(model, b)
        total = loss + (probe_weight * probe.loss(scenes, 4) if probe else 0)
        total.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); opt.zero_grad()
        losses.append(loss.item())
        if step % 50 == 0: print(f"probe {probe_weight}: step {step} answer loss {np.mean(losses[-25:]):.3f}", flush=True)
    model.eval()
    test_rng = np.random.default_rng(999)
    scenes = [draw_scene(test_rng, "single") for _ in range(N_TEST)]
    outs = generate(model, proc, [s.image for s in scenes], [messages(Q)] * N_TEST, max_new_tokens=8)
    acc = float(np.mean([normalize_answer(parse_completion(o, think=False).answer or "") == s.objects[0].colour
                         for o, s in zip(outs, scenes)]))
    return dict(probe_weight=probe_weight, answer_loss_last25=round(float(np.mean(losses[-25:])), 4),
                colour_accuracy=round(acc, 4), seconds=round(time.perf_counter() - t0, 1))


res = dict(steps=args.steps, lr=args.lr, threads=args.threads, runs=[run(0.0), run(1.0)])
print(json.dumps(res, indent=1))
args.out = result_path("pretrain_probe", args.quick, args.out)
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
Path(args.out).write_text(json.dumps(res, indent=1) + "\n")

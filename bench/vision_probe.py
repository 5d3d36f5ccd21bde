"""Stage 1 of the tiny base on its own (issue 12): how fast does the vision tower learn to separate colours, shapes
and sizes from the perception probe's targets alone, with and without the per-object head?

A fresh vision tower and merger of `TINY_SIZES["base"]` (16 merged tokens for a 56-px scene shown at 112 px), trained
with AdamW on 64 fresh scenes a step (single 0.4, pair 0.3, composite 0.3), exactly as `pretrain.train_vision` does,
and scored every 100 steps on 210 fixed scenes:

- token colour: argmax of the token head against the token's dominant colour, on tokens more than 30% covered;
- token shape: the same for shapes;
- object shape and size: the per-object head on each object's box-pooled tokens (`pretrain.object_pooling`). Without
  the object term in the loss that head is trained alone on the frozen tokens' pooled features for the score only
  (gradients stopped), so both settings are read the same way.

    .venv/bin/python bench/vision_probe.py --quick                                       # smoke: 6 steps, tmp output
    OMP_NUM_THREADS=1 .venv/bin/python bench/vision_probe.py --steps 800                 # bench/results/vision_probe.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/vision_probe.py --steps 800 --no-object     # ..._no-object.json
"""
from __future__ import annotations
import argparse, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, quiet, result_path, write_json  # noqa: E402


def run(steps: int = 800, batch: int = 64, lr: float = 3e-3, object_term: bool = True, image_size: int = 56,
        eval_every: int = 100, threads: int = 1, seed: int = 0, quick: bool = False, out=None) -> dict:
    import numpy as np, torch
    import torch.nn.functional as F
    from transformers import Qwen2_5_VLForConditionalGeneration
    from vrft_aug.pipeline import tiny_base_dir
    from vrft_aug.pretrain import (N_COLOUR_BINS, SHAPES, PerceptionProbe, _lr_factor, _pick, draw_scene,
                                   token_targets)
    from vrft_aug.tiny import TINY_SIZES, load_tiny_vlm, tiny_config
    quiet(); torch.set_num_threads(threads)
    if quick: steps, batch, eval_every = 6, 8, 3
    out = result_path("vision_probe" + ("" if object_term else "_no-object"), quick, out)
    proc = load_tiny_vlm(tiny_base_dir())[1]
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(tiny_config(TINY_SIZES["base"], proc.tokenizer))
    vision, probe = model.model.visual, PerceptionProbe(model)
    params = list(vision.parameters()) + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    mix, grid = {"single": .4, "pair": .3, "composite": .3}, 4
    erng = np.random.default_rng(7)
    test = [draw_scene(erng, k, image_size) for k in ["single", "pair", "composite"] * (3 if quick else 70)]

    def tokens(scenes):
        enc = proc.image_processor(images=[s.image for s in scenes], return_tensors="pt")
        vision(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
        return probe.tokens

    def scores():
        with torch.no_grad():
            tokens(test)
            logits, (p, q) = probe.linear(probe.tokens), token_targets(test, grid)
            on_c, on_s = p[:, 1:].sum(1) > .3, q[:, 1:].sum(1) > .3
            colour = (logits[on_c, 1:N_COLOUR_BINS].argmax(1) == p[on_c, 1:].argmax(1)).float().mean()
            shape = (logits[on_s, N_COLOUR_BINS + 1:].argmax(1) == q[on_s, 1:].argmax(1)).float().mean()
            obj, shapes, sizes = probe.object_logits(test, grid)
            k = len(SHAPES)
            return dict(token_colour=round(float(colour), 4), token_shape=round(float(shape), 4),
                        object_shape=round(float((obj[:, :k].argmax(1) == shapes).float().mean()), 4),
                        object_size=round(float((obj[:, k:].argmax(1) == sizes).float().mean()), 4))

    rng, hist, t0 = np.random.default_rng(seed), [], time.perf_counter()
    res = dict(settings=dict(steps=steps, batch=batch, lr=lr, object_term=object_term, image_size=image_size,
                             threads=threads, seed=seed), machine_start=machine(), curve=hist)
    model.train()
    for step in range(steps):
        for g in opt.param_groups: g["lr"] = lr * _lr_factor(step, steps, 50)
        scenes = [draw_scene(rng, _pick(rng, mix), image_size) for _ in range(batch)]
        tokens(scenes)
        if object_term: loss = probe.loss(scenes, grid)
        else:   # token targets for the tower; the object head learns on detached tokens, for the score only
            full = probe.loss(scenes, grid) - probe.object_loss(scenes, grid)
            kept, probe.tokens = probe.tokens, probe.tokens.detach()
            loss = full + probe.object_loss(scenes, grid); probe.tokens = kept
        loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); opt.zero_grad()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            hist.append(dict(step=step + 1, loss=round(loss.item(), 4), **scores(), seconds=round(time.perf_counter() - t0, 1)))
            print(hist[-1], flush=True); write_json(res, out)
    probe.remove()
    res["machine_end"], res["seconds"] = machine(), round(time.perf_counter() - t0, 1)
    write_json(res, out); res["out"] = str(out)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--no-object", action="store_true", help="train the tower on the token targets only")
    ap.add_argument("--image-size", type=int, default=56)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke test: 6 steps of 8, 9 test scenes, temporary output")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    res = run(a.steps, a.batch, a.lr, not a.no_object, a.image_size, threads=a.threads, quick=a.quick, out=a.out)
    print(f"final: {res['curve'][-1]} -> {res['out']}")


if __name__ == "__main__":
    main()

"""Continue a pre-trained base on image reading questions and watch where reading fails (issue 12).

Starts from a base folder (default: the committed one), trains only compact image reading questions
(`vrft_aug.pretrain.sample_examples`, 16 a step, AdamW, 20 warm-up steps then cosine to 5%), optionally with worded
questions beside them (`worded_reading_qa`, the image in words or, with `--own-think`, no `Image:` line and the think's
description given), and scores `eval_reading` (96 fixed compact 4-name questions, chance 0.25) before the first step and
every `--eval-every` steps. `eval_reading` splits a miss into perception (`think_describes_image`) and the look-up
(`copy_given_listed`: of the thinks that describe a listed definition, the share answering with that definition's name).

    .venv/bin/python bench/reading_finetune.py --quick                                  # smoke: 4 steps, 8 questions
    OMP_NUM_THREADS=1 .venv/bin/python bench/reading_finetune.py --base /tmp/base_replay --steps 2000 --eval-every 250
    OMP_NUM_THREADS=1 .venv/bin/python bench/reading_finetune.py --base /tmp/base_replay --steps 500 --worded 32 --own-think
"""
from __future__ import annotations
import argparse, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import curve_point, finish, machine, quiet, result_path  # noqa: E402

KEYS = ("reading", "think_describes_image", "think_listed", "copy_given_listed")

def run(base=None, steps: int = 1000, batch: int = 16, worded: int = 0, own_think: bool = False, restate: bool = False,
        lr: float = 1e-3, eval_every: int = 250, n_eval: int = 96, threads: int = 1, seed: int = 7, quick: bool = False,
        out=None) -> dict:
    import numpy as np, torch
    from vrft_aug.pretrain import (PretrainConfig, _lr_factor, eval_reading, lm_loss, load_pretrained_base, name_pieces,
                                   sample_examples, sft_batch, worded_reading_qa)
    quiet(); torch.set_num_threads(threads)
    if quick: steps, batch, worded, eval_every, n_eval = 4, 2, min(worded, 2), 2, 8
    out = result_path("reading_finetune" + ("_own-think" if own_think else "") + ("_restate" if restate else "")
                      + (f"_worded{worded}" if worded else ""), quick, out)
    model, proc = load_pretrained_base(base, verify=base is None)
    cfg, pieces = PretrainConfig(restate=restate), name_pieces(proc.tokenizer)
    def score():
        model.eval(); r = eval_reading(model, proc, n=n_eval); model.train()
        return {k: r[k] for k in KEYS}
    res = dict(settings=dict(base=str(base or "committed"), steps=steps, batch=batch, worded=worded, own_think=own_think,
                             restate=restate, lr=lr, n_eval=n_eval, threads=threads, seed=seed),
               machine_start=machine(), curve=[dict(step=0, **score())])
    print(res["curve"][-1], flush=True)
    rng, t0, window = np.random.default_rng(seed), time.perf_counter(), []
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    for step in range(steps):
        for g in opt.param_groups: g["lr"] = lr * _lr_factor(step, steps, 20)
        scenes, prompts, targets = zip(*sample_examples(rng, batch, True, cfg, pieces, False))
        loss = lm_loss(model, sft_batch(proc, [s.image for s in scenes], prompts, targets))
        if worded:
            wx = [worded_reading_qa(rng, pieces, restate=restate, image_line=not own_think) for _ in range(worded)]
            loss = loss + lm_loss(model, sft_batch(proc, None, [e["question"] for e in wx], [e["completion"] for e in wx],
                                                   given=[e["given"] for e in wx]))
        loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad()
        window.append(loss.item())
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            curve_point(res, out, step + 1, window, t0, **score()); window = []
    return finish(res, out, t0)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, default=None, help="a base folder (default: the committed base)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16, help="image reading questions per step")
    ap.add_argument("--worded", type=int, default=0, help="worded reading questions added to every step")
    ap.add_argument("--own-think", action="store_true", help="worded questions without the `Image:` line; the think's description is given")
    ap.add_argument("--restate", action="store_true", help="thinks copy every definition line before the matching one")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke test: 4 steps of 2, 8 questions, output in a temporary folder")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    res = run(a.base, a.steps, a.batch, a.worded, a.own_think, a.restate, a.lr, a.eval_every, threads=a.threads,
              quick=a.quick, out=a.out)
    print(f"final: {res['curve'][-1]} -> {res['out']}")

if __name__ == "__main__":
    main()

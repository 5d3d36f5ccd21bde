"""Text-only reading probe for the tiny base (issue 12): can the base-size language model learn to answer with the
made-up name whose definition matches a description, when the description is given in words instead of an image?

Perfect perception, short prompts: isolates the reading step (find the definition line that matches, copy its name)
from vision. A fresh randomly initialised model of `TINY_SIZES["base"]` with the committed base's tokenizer, trained
with AdamW on fresh examples every step (batch 64; 2 names for the first 15% of steps, 3 for the next 15%, then 2-4),
and scored greedily every 250 steps on 64 fixed 4-name questions (chance 0.25). An example:

    user:      Image: a small red circle.
               Classes:
               - a large blue square → tosen
               - a small red circle → pelamu
               Which class is it?
    assistant: <think> a small red circle </think><answer> pelamu </answer>

Options change the layout: `--think-line` makes the think restate the whole matching line (`a small red circle →
pelamu`), so the answer is copied from the model's own think; `--one-piece` draws each name from one vocabulary piece
instead of 1-3 pieces or syllables; `--sep` sets the separator between description and name; `--lookup N` adds N
examples of the library's look-up practice (`vrft_aug.pretrain.lookup_practice`: a compact definition table and a list
of its descriptions in the user turn, each description with its arrow and name in the answer) to every step.
`--own-think` drops the `Image:` line and hands the model the think's description instead of training it (the
look-up keyed on the model's own words, as on an image); `--restate` makes the think copy every definition line
before the matching one (`vrft_aug.pretrain.restated_think`).

    .venv/bin/python bench/reading_probe.py --quick                    # smoke: 20 steps of 8, 8 questions, tmp output
    OMP_NUM_THREADS=1 .venv/bin/python bench/reading_probe.py --steps 3000                  # bench/results/reading_probe.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/reading_probe.py --steps 3000 --think-line     # ..._think-line.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/reading_probe.py --steps 1500 --think-line --lookup 32   # ..._lookup32.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/reading_probe.py --steps 2500 --think-line --own-think            # ..._own-think.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/reading_probe.py --steps 2500 --think-line --own-think --restate  # ..._restate.json
"""
from __future__ import annotations
import argparse, math, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import curve_point, finish, machine, quiet, result_path  # noqa: E402

def make_example(rng, k: int, names_fn, think_line: bool, sep: str) -> tuple[str, str, str]:
    "(question, target completion, right name) with k definitions: the library's `text_reading_example`."
    from vrft_aug.pretrain import text_reading_example
    e = text_reading_example(rng, k, think_line=think_line, sep=sep, names_fn=names_fn)
    return e["question"], e["completion"], e["answer"]

def own_think(question: str, completion: str, sep: str) -> tuple[str, str, str]:
    "`--own-think`: drop the `Image:` line; the think's description becomes a given prefix. (question, prefix, rest)."
    desc = question.split("\n")[0].removeprefix("Image: ").rstrip(".")
    prefix = f"<think> {desc}"
    assert completion.startswith(prefix + f" {sep} ") or completion.startswith(prefix + "; "), (completion, prefix)
    return question.split("\n", 1)[1], prefix, completion[len(prefix):]

def restate(question: str, completion: str, sep: str) -> str:
    "`--restate`: the think copies every definition line (prompt order) between the description and the matching line."
    desc, rest = completion.removeprefix("<think> ").split(f" {sep} ", 1)
    lines = [l[2:] for l in question.split("\n") if l.startswith("- ")]
    return f"<think> {desc}; " + "; ".join(lines) + f"; {desc} {sep} {rest}"

def _prompt(tok, q: str, prefix: str = "") -> str:
    return tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False) + prefix

def encode(tok, questions, completions, prefixes=None):
    "Right-padded ids, mask and labels (completion and its <|im_end|> only) for chat-formatted text-only examples."
    import torch
    ids, labels = [], []
    for q, c, pre in zip(questions, completions, prefixes or [""] * len(questions)):
        p = tok(_prompt(tok, q, pre), add_special_tokens=False)["input_ids"]
        t = tok(c + "<|im_end|>", add_special_tokens=False)["input_ids"]
        ids.append(p + t); labels.append([-100] * len(p) + t)
    L = max(map(len, ids))
    pad = lambda rows, v: torch.tensor([r + [v] * (L - len(r)) for r in rows])
    return pad(ids, tok.pad_token_id), pad([[1] * len(r) for r in ids], 0), pad(labels, -100)

def evaluate(model, tok, questions, sep: str, batch: int = 32, prefixes=None, max_new_tokens: int = 32) -> dict:
    "Greedy answers: exact accuracy, and the share that is a listed name (valid)."
    import torch
    from vrft_aug.core import parse_completion
    ok = valid = 0
    side, tok.padding_side = tok.padding_side, "left"
    try:
        with torch.no_grad():
            for i in range(0, len(questions), batch):
                chunk = questions[i:i + batch]
                pre = (prefixes or [""] * len(questions))[i:i + batch]
                enc = tok([_prompt(tok, q, p) for (q, _), p in zip(chunk, pre)],
                          return_tensors="pt", padding=True, add_special_tokens=False)
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"))
                for (q, name), o, p in zip(chunk, out[:, enc["input_ids"].size(1):], pre):
                    ans = (parse_completion(p + tok.decode(o, skip_special_tokens=True)).answer or "").strip()
                    ok += ans == name
                    valid += bool(ans) and f"{sep} {ans}\n" in q + "\n"
    finally: tok.padding_side = side
    return dict(accuracy=ok / len(questions), valid=valid / len(questions))

def lookup_batch(tok, rng, n: int, pieces):
    "n look-up practice examples (text only, chat formatted), labelled on the whole answer."
    from vrft_aug.pretrain import lookup_practice
    ex = [lookup_practice(rng, pieces) for _ in range(n)]
    return encode(tok, [e["question"] for e in ex], [e["completion"] for e in ex])

def run(steps: int = 3000, batch: int = 64, lr: float = 2e-3, think_line: bool = False, one_piece: bool = False,
        sep: str = "→", n_eval: int = 64, eval_every: int = 250, threads: int = 1, seed: int = 0,
        quick: bool = False, out=None, lookup: int = 0, own: bool = False, restated: bool = False) -> dict:
    import numpy as np, torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from vrft_aug.pipeline import tiny_base_dir
    from vrft_aug.pretrain import lm_loss, made_up_name, name_pieces, text_reading_k
    from vrft_aug.tiny import TINY_SIZES, load_tiny_vlm, tiny_config
    quiet(); torch.set_num_threads(threads)
    if quick: steps, batch, n_eval, eval_every = 20, 8, 8, 10
    tag = "_".join(x for x in ("think-line" if think_line else "", "one-piece" if one_piece else "",
                               f"lookup{lookup}" if lookup else "", "own-think" if own else "", "restate" if restated else "",
                               f"seed{seed}" if seed else "") if x)
    out = result_path("reading_probe" + (f"_{tag}" if tag else ""), quick, out)
    tok = load_tiny_vlm(tiny_base_dir())[1].tokenizer
    pieces = name_pieces(tok)
    names_fn = (lambda rng: str(pieces[int(rng.integers(len(pieces)))])) if one_piece else (lambda rng: made_up_name(rng, pieces))
    def ex(rng, k):
        q, c, n = make_example(rng, k, names_fn, think_line, sep)
        return q, (restate(q, c, sep) if restated else c), n
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(tiny_config(TINY_SIZES["base"], tok)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    erng = np.random.default_rng(999)
    questions, prefixes = [], None
    for q, c, n in (ex(erng, 4) for _ in range(n_eval)):
        if own: q, p, _ = own_think(q, c, sep); prefixes = (prefixes or []) + [p]
        questions.append((q, n))
    rng, lrng, hist, window, t0 = np.random.default_rng(seed), np.random.default_rng(seed + 1), [], [], time.perf_counter()
    res = dict(settings=dict(steps=steps, batch=batch, lr=lr, think_line=think_line, one_piece=one_piece, sep=sep, lookup=lookup, own_think=own, restate=restated,
                             n_eval=n_eval, threads=threads, seed=seed), machine_start=machine(), curve=hist)
    batch_loss = lambda ids, mask, labels: lm_loss(model, dict(input_ids=ids, attention_mask=mask, labels=labels))
    for step in range(steps):
        for g in opt.param_groups:   # linear warm-up over 100 steps, cosine to 5% of the peak
            g["lr"] = lr * min(1.0, (step + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        k = text_reading_k(step, steps, rng)
        q, c, _ = zip(*(ex(rng, k) for _ in range(batch)))
        if own: q, pre, c = zip(*(own_think(a, b, sep) for a, b in zip(q, c)))
        loss = batch_loss(*encode(tok, q, c, pre if own else None))
        if lookup: loss = loss + batch_loss(*lookup_batch(tok, lrng, lookup, pieces))
        loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad()
        window.append(loss.item())
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            model.eval(); scores = evaluate(model, tok, questions, sep, prefixes=prefixes, max_new_tokens=128 if restated else 32); model.train()
            curve_point(res, out, step + 1, window, t0, **scores); window = []
    return finish(res, out, t0)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--think-line", action="store_true", help="the think restates the whole matching definition line")
    ap.add_argument("--one-piece", action="store_true", help="names of one vocabulary piece")
    ap.add_argument("--sep", default="→", help="separator between a description and its name")
    ap.add_argument("--lookup", type=int, default=0, help="look-up practice examples added to every step")
    ap.add_argument("--own-think", action="store_true",
                    help="no `Image:` line: the think's description is a given prefix (the look-up keyed on the model's own words)")
    ap.add_argument("--restate", action="store_true",
                    help="the think copies every definition line after the description, then the matching line (with --think-line)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="model initialisation and training examples (the questions scored stay fixed)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 20 steps, 8 questions, output in a temporary folder")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    res = run(a.steps, a.batch, a.lr, a.think_line, a.one_piece, a.sep, threads=a.threads, seed=a.seed, quick=a.quick, out=a.out,
              lookup=a.lookup, own=a.own_think, restated=a.restate)
    print(f"final: {res['curve'][-1]} -> {res['out']}")

if __name__ == "__main__":
    main()

"""Data-side costs against a training step: SynthMed drawing, prompt building, chat rendering, image preprocessing,
and fetching a row of the TRL dataset (its image is stored PNG-encoded by `datasets` and decoded on every access).

Each cost is measured per item (images/s, prompts/s, rows/s), then charged to one GRPO step as a step consumes it, and
compared with a training step measured in the same run (tiny model, G = 4, 2 prompts x 4 completions of 32 tokens per
step, at 56 px and at 448 px):
- SynthMed drawing and prompt building happen once per sample (in `to_trl`), so a step is charged for the 2 new
  prompts it uses; this is an upper bound (the rows are reused every epoch).
- chat rendering, image preprocessing (the processor's resize + normalise + patchify), the processor call TRL makes
  (tokenization + image preprocessing, batched over the step's rows) and the dataset row fetch happen for every row of
  the generation batch (TRL repeats each prompt G times), so a step is charged for 8 rows. The processor call runs
  inside the step (TRL's input preparation), so its share is part of the step, not added to it.
Target: each of these is at most 5% of a training step.

    .venv/bin/python bench/data.py --quick    # 16 items per measurement, 56 px, 2 measured training steps
    .venv/bin/python bench/data.py            # 64 items, 56/224/448 px, steps at 56 and 448 px, 5 measured steps
"""
from __future__ import annotations
import argparse, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (result_path, grpo_args, machine, median, quiet, reward_funcs, silence_trainer, step_timer,  # noqa: E402
                    tiny_model, train_dataset, write_json)

TASKS = ("cells", "fundus", "lesion")

def per_second(fn, items, repeats: int = 3) -> float:
    "Items per second of `fn` over `items` (median of `repeats` passes)."
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        for x in items: fn(x)
        ts.append(time.perf_counter() - t)
    return len(items) / median(ts)

def training_step_s(model_dir, proc, steps: int, image_size: int = 56) -> float:
    "Median step time of GRPO (VRFTTrainer, imitation off) at the base settings, in this process."
    from vrft_aug.imitation import VRFTConfig, VRFTTrainer
    funcs, weights = reward_funcs()
    ds = train_dataset(8, image_size)
    with tempfile.TemporaryDirectory() as tmp:
        timer = step_timer()
        args = VRFTConfig(**grpo_args(tmp, G=4, completion_len=32, prompts_per_step=2, max_steps=steps + 1,
                                      reward_weights=weights))
        tr = silence_trainer(VRFTTrainer(model=str(model_dir), reward_funcs=funcs, args=args, train_dataset=ds,
                                         processing_class=proc, callbacks=[timer]))
        tr.train()
    return median([s["step_s"] for s in timer.steps[1:]])

def run(quick: bool = False, out=None, threads: int = 1) -> dict:
    import torch
    from vrft_aug.data import synthmed, to_trl
    from vrft_aug.prompts import make_prompt_fn
    from vrft_aug.tiny import load_tiny_vlm
    quiet(); torch.set_num_threads(threads)
    n, sizes, steps = (16, (56,), 2) if quick else (64, (56, 224, 448), 5)
    step_sizes = (56,) if quick else (56, 448)
    G, prompts_per_step = 4, 2
    rows_per_step = G * prompts_per_step
    res = dict(settings=dict(n=n, sizes=sizes, steps=steps, G=G, prompts_per_step=prompts_per_step, threads=threads,
                             step_image_sizes=step_sizes, completion_len=32), machine_start=machine())
    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory()
    model_dir = tiny_model(Path(tmp.name) / "tiny", "test", max_side=max(sizes))
    proc = load_tiny_vlm(model_dir)[1]
    # 1. SynthMed: images drawn per second, per task and size
    res["synthmed_images_per_s"] = {f"{t}@{s}": per_second(synthmed(t, "train", n=n, image_size=s).__getitem__, range(n), 1)
                                    for t in TASKS for s in sizes}
    cells = [synthmed("cells", "train", n=n, image_size=56)[i] for i in range(n)]
    # 2. prompt building (sample -> messages) and chat rendering (messages -> the text the model reads)
    plain, knowledge = make_prompt_fn("plain"), make_prompt_fn("knowledge")
    res["prompts_per_s"] = {"plain": per_second(plain, cells), "knowledge": per_second(knowledge, cells)}
    msgs = [knowledge(s)[0] for s in cells]
    res["chat_renders_per_s"] = per_second(lambda m: proc.apply_chat_template(m, add_generation_prompt=True,
                                                                              tokenize=False), msgs)
    # 3. image preprocessing (resize, normalise, patchify) and the full processor call TRL makes per row
    res["image_preprocess_per_s"] = {}
    for s in sizes:
        imgs = [synthmed("fundus", "train", n=n, image_size=s)[i].image for i in range(min(n, 16))]
        res["image_preprocess_per_s"][str(s)] = per_second(lambda im: proc.image_processor(images=[im], return_tensors="pt"), imgs)
    # per image size of a training run: the costs a step pays, and a training step at that size
    res["by_image_size"] = {}
    for S in step_sizes:
        cells_s = [synthmed("cells", "train", n=n, image_size=S)[i] for i in range(n)] if S != 56 else cells
        r = {}
        # TRL tokenizes a step's rows (each prompt repeated G times) and preprocesses their images in one batched call
        texts = [proc.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in msgs]
        batches = [(texts[i:i + rows_per_step], [c.image for c in cells_s[i:i + rows_per_step]])
                   for i in range(0, n - rows_per_step + 1, rows_per_step)]
        r["processor_rows_per_s"] = rows_per_step * per_second(
            lambda b: proc(text=b[0], images=b[1], padding=True, padding_side="left", return_tensors="pt"), batches)
        # TRL dataset rows fetched per second (PNG decode of the stored image) and to_trl conversion per sample
        t = time.perf_counter(); trl_ds = to_trl(cells_s, prompt_fn=knowledge)
        r["to_trl_samples_per_s"] = n / (time.perf_counter() - t)
        r["dataset_rows_per_s"] = per_second(trl_ds.__getitem__, range(len(trl_ds)))
        r["training_step_s"] = training_step_s(model_dir, proc, steps, S)
        per_step = {
            "synthmed_draw": prompts_per_step / min(v for k, v in res["synthmed_images_per_s"].items() if k.endswith(f"@{S}")),
            "prompt_build": prompts_per_step / min(res["prompts_per_s"].values()),
            "to_trl": prompts_per_step / r["to_trl_samples_per_s"],
            "chat_render": rows_per_step / res["chat_renders_per_s"],
            "image_preprocess": rows_per_step / res["image_preprocess_per_s"][str(S)],
            "processor_call": rows_per_step / r["processor_rows_per_s"],
            "dataset_row_fetch": rows_per_step / r["dataset_rows_per_s"],
        }
        r["per_step_cost_s"] = per_step
        r["fraction_of_step"] = {k: v / r["training_step_s"] for k, v in per_step.items()}
        r["all_within_target"] = all(v <= 0.05 for v in r["fraction_of_step"].values())
        res["by_image_size"][str(S)] = r
    tmp.cleanup()
    res.update(res["by_image_size"]["56"])   # the base setting's figures at the top level
    res["target_fraction"] = 0.05
    res["machine_end"], res["seconds"] = machine(), round(time.perf_counter() - t0, 1)
    write_json(res, result_path("data", quick, out))
    return res

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="16 items, 56 px only, 2 measured steps (smoke test)")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/data.json; with --quick <tmp>/vrft_aug_bench/data_quick.json)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    a = ap.parse_args(argv)
    res = run(a.quick, a.out, a.threads)
    for k, v in res["synthmed_images_per_s"].items(): print(f"SynthMed {k:12s} {v:9.1f} images/s")
    for k, v in res["prompts_per_s"].items(): print(f"prompt build {k:10s} {v:9.1f} prompts/s")
    print(f"chat render            {res['chat_renders_per_s']:9.1f} /s")
    for k, v in res["image_preprocess_per_s"].items(): print(f"image preprocess {k:>4s} px {v:9.1f} images/s")
    for S, r in res["by_image_size"].items():
        print(f"--- {S} px: processor (batched) {r['processor_rows_per_s']:.1f} rows/s, dataset row fetch "
              f"{r['dataset_rows_per_s']:.1f} rows/s, to_trl {r['to_trl_samples_per_s']:.1f} samples/s")
        print(f"training step {r['training_step_s']:.3f} s; share of a step:")
        for k, v in r["fraction_of_step"].items(): print(f"  {k:18s} {100 * v:6.2f} %")
        print(f"all within 5% at {S} px: {r['all_within_target']}")
    print(f"load {res['machine_start']['loadavg']} -> "
          f"{res['machine_end']['loadavg']}, {res['seconds']} s")

if __name__ == "__main__":
    main()

"""Overhead of `VRFTTrainer` against plain `trl.GRPOTrainer`, and the cost of the imitation loss.

The same tiny model (built offline), SynthMed training rows, rewards (accuracy + format), seed and GRPO settings go
through four trainers: `GRPOTrainer` ("grpo"), `VRFTTrainer` with `imitation_coef=0` ("vrft"), `VRFTTrainer` with
`imitation_coef=0.1` ("vrft_imitation"), and a prototype of the fix proposed for the imitation loss
("vrft_imitation_dedup": each distinct prompt/demonstration row of the batch scored once instead of G times, weighted
by its count; same loss and gradient, checked in tests/test_bench.py). Each trainer is built once; then, round after
round, each trainer runs a chunk of steps in a rotating order (a, b, c, d / b, c, d, a / ...), so all see the same
machine load. The first round is warm-up, and so is the first step of every chunk (the optimizer is rebuilt by each
`train()` call). Step times come from a `TrainerCallback` (on_step_begin -> on_step_end); every completion has the
same length (min_new_tokens), so every step does the same work.

Reported, in wall and in CPU time: median step time per trainer, the ratio of medians, and the median of the
per-round ratios (each round's trainers ran back to back, so this ratio is the one least affected by load drift). The
verdict uses the CPU-time per-round ratio: other processes' load stretches wall time, much less CPU time. Targets: vrft/grpo <= 1.05,
vrft_imitation/grpo <= 1.3. A profile split of the steps (generation, scoring, other input preparation, update) per
trainer shows where any difference comes from.

    .venv/bin/python bench/overhead.py --quick    # 1 measured round of 3 steps per trainer (smoke test)
    .venv/bin/python bench/overhead.py            # 12 measured rounds of 2 steps per trainer (24 steps each)
"""
from __future__ import annotations
import argparse, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (RESULTS, Spans, grpo_args, machine, median, quiet, reward_funcs, silence_trainer, split_step,  # noqa: E402
                    step_timer, tiny_model, train_dataset, write_json)

VARIANTS = ("grpo", "vrft", "vrft_imitation", "vrft_imitation_dedup")

def select_rows(inputs: dict, idx, B: int) -> dict:
    "The rows `idx` of a TRL batch dict of B rows (per-row tensors and lists; images through TRL's own split/unsplit)."
    import torch
    from trl.trainer.utils import split_pixel_values_by_grid, unsplit_pixel_values_by_grid
    il, out = idx.tolist(), {}
    for k, v in split_pixel_values_by_grid(inputs).items():
        if isinstance(v, list) and len(v) == B: out[k] = [v[i] for i in il]
        elif torch.is_tensor(v) and v.dim() > 0 and v.size(0) == B: out[k] = v[idx]
        else: out[k] = v
    return unsplit_pixel_values_by_grid(out)

def _distinct_rows(inputs: dict, B: int):
    "Index of the first row of each distinct (prompt, image, demonstration) and how many rows repeat it."
    import torch
    from trl.trainer.utils import split_pixel_values_by_grid
    pv = split_pixel_values_by_grid(inputs).get("pixel_values")
    pv = pv if isinstance(pv, list) and len(pv) == B else [None] * B
    ids = torch.cat([inputs["prompt_ids"], inputs["prompt_mask"], inputs["demo_completion_ids"]], dim=1)
    first, counts = [], []
    for i in range(B):
        for u, j in enumerate(first):
            if torch.equal(ids[i], ids[j]) and (pv[i] is None or torch.equal(pv[i], pv[j])): counts[u] += 1; break
        else: first.append(i); counts.append(1)
    dev = ids.device
    return torch.tensor(first, device=dev), torch.tensor(counts, device=dev)

def _dedup_trainer_cls():
    from trl import GRPOTrainer
    from vrft_aug.imitation import VRFTTrainer

    class DedupImitationTrainer(VRFTTrainer):
        """PROTOTYPE of the fix proposed for `vrft_aug.imitation.VRFTTrainer.compute_loss` (measured here, not shipped):
        a GRPO batch holds each prompt G times, so the imitation loss scores G identical (prompt, demonstration) rows.
        Scoring each distinct row once, weighted by its count, gives the same loss and gradient for 1/G of the cost."""
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch
            loss = GRPOTrainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            if self.args.imitation_coef > 0 and "demo_completion_ids" in inputs:
                B = inputs["prompt_ids"].size(0)
                first, counts = _distinct_rows(inputs, B)
                sub = select_rows(inputs, first, B)
                logps, mask = self.imitation_logps(model, sub), sub["demo_completion_mask"]
                n = inputs["demo_num_items"].clamp(min=1.0) / self.accelerator.num_processes
                if self.model.training: n = n * self.current_gradient_accumulation_steps / self.args.steps_per_generation
                w = mask.to(logps.dtype) * counts.to(logps.dtype)[:, None]
                loss = loss + self.args.imitation_coef * (-(logps * w).sum() / n)
            return loss
    return DedupImitationTrainer

def make_trainer(variant: str, model_dir, processor, dataset, out: Path, settings: dict, timer):
    from trl import GRPOConfig, GRPOTrainer
    from vrft_aug.imitation import VRFTConfig, VRFTTrainer
    funcs, weights = reward_funcs()
    kw = grpo_args(out / variant, G=settings["G"], completion_len=settings["completion_len"],
                   prompts_per_step=settings["prompts_per_step"], reward_weights=weights)
    if variant == "grpo": cls, args = GRPOTrainer, GRPOConfig(**kw)
    else:
        cls = _dedup_trainer_cls() if variant == "vrft_imitation_dedup" else VRFTTrainer
        args = VRFTConfig(**kw, imitation_coef=0.0 if variant == "vrft" else settings["imitation_coef"])
    return silence_trainer(cls(model=str(model_dir), reward_funcs=funcs, args=args, train_dataset=dataset,
                               processing_class=processor, callbacks=[timer]))

def run(quick: bool = False, out=None, threads: int = 1) -> dict:
    import torch
    from vrft_aug.tiny import load_tiny_vlm
    quiet(); torch.set_num_threads(threads)
    settings = dict(G=4, prompts_per_step=2, completion_len=32, image_size=56, imitation_coef=0.1, size="test",
                    rounds=2 if quick else 13, chunk=3 if quick else 2, warmup_rounds=1, threads=threads)
    start = machine(); t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, Spans() as spans:
        tmp = Path(tmp)
        model_dir = tiny_model(tmp / "tiny", settings["size"], max_side=settings["image_size"])
        proc = load_tiny_vlm(model_dir)[1]
        ds = train_dataset(16, settings["image_size"])
        timers = {v: step_timer(spans) for v in VARIANTS}
        trainers = {v: make_trainer(v, model_dir, proc, ds, tmp, settings, timers[v]) for v in VARIANTS}
        per_round = {v: [] for v in VARIANTS}   # measured steps of each round
        order = list(VARIANTS)
        for r in range(settings["rounds"]):
            for v in order:
                tr = trainers[v]
                tr.args.max_steps = settings["chunk"] + 1
                tr.train()
                if r >= settings["warmup_rounds"]: per_round[v].append(timers[v].chunk[1:])
            order = order[1:] + order[:1]
    res = dict(settings=settings, machine_start=start, machine_end=machine(), seconds=round(time.perf_counter() - t0, 1))
    res["raw"] = {v: [[dict(wall=round(s["step_s"], 4), cpu=round(s["cpu_s"], 4)) for s in rnd] for rnd in per_round[v]]
                  for v in VARIANTS}
    res["steps_measured"] = {v: sum(len(rnd) for rnd in per_round[v]) for v in VARIANTS}
    for key, name in (("step_s", "wall"), ("cpu_s", "cpu"), ("iter_s", "iter")):
        med = {v: median([s[key] for rnd in per_round[v] for s in rnd]) for v in VARIANTS}
        res[f"median_{name}_s"] = med
        res[f"{name}_ratio_of_medians"] = {v: med[v] / med["grpo"] for v in VARIANTS[1:]}
        res[f"{name}_median_round_ratio"] = {v: median([median([s[key] for s in a]) / median([s[key] for s in g])
                                                        for a, g in zip(per_round[v], per_round["grpo"])])
                                             for v in VARIANTS[1:]}
    for clock in ("wall", "cpu"):
        res[f"split_median_{'s' if clock == 'wall' else 'cpu_s'}"] = {
            v: {k: median([split_step(s, clock)[k] for rnd in per_round[v] for s in rnd])
                for k in ("step_s", "generation_s", "scoring_s", "other_prep_s", "update_s")} for v in VARIANTS}
    res["targets"] = dict(vrft=1.05, vrft_imitation=1.3, vrft_imitation_dedup=1.3)
    res["target_rule"] = "cpu_median_round_ratio <= target (CPU time: steadier than wall time on the shared machine)"
    res["target_met"] = {v: res["cpu_median_round_ratio"][v] <= res["targets"][v] for v in VARIANTS[1:]}
    write_json(res, out or RESULTS / ("overhead_quick.json" if quick else "overhead.json"))
    return res

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and steps (smoke test, < 60 s)")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/overhead[_quick].json)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    a = ap.parse_args(argv)
    res = run(a.quick, a.out, a.threads)
    for v in VARIANTS:
        sp = res["split_median_s"][v]
        print(f"{v:15s} median step {res['median_wall_s'][v]*1e3:7.1f} ms wall, {res['median_cpu_s'][v]*1e3:7.1f} ms cpu  (gen {sp['generation_s']*1e3:.1f}, "
              f"score {sp['scoring_s']*1e3:.1f}, prep {sp['other_prep_s']*1e3:.1f}, update {sp['update_s']*1e3:.1f}) "
              f"n={res['steps_measured'][v]}")
    for v in VARIANTS[1:]:
        print(f"{v}/grpo: wall: ratio of medians {res['wall_ratio_of_medians'][v]:.3f}, median per-round ratio "
              f"{res['wall_median_round_ratio'][v]:.3f}; cpu: {res['cpu_ratio_of_medians'][v]:.3f}, "
              f"{res['cpu_median_round_ratio'][v]:.3f} (target <= {res['targets'][v]}) -> "
              f"{'met' if res['target_met'][v] else 'MISSED'}")
    print(f"load {res['machine_start']['loadavg']} -> {res['machine_end']['loadavg']}, {res['seconds']} s")

if __name__ == "__main__":
    main()

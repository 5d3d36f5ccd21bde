"""Step time of `VRFTTrainer` against plain `trl.GRPOTrainer` at the CPU scale, and what sharing each group's work buys.

The CPU scale's real configuration (`vrft_aug/configs/cpu.yaml` with the `vrft+imitation` preset's GRPO stage): the
committed tiny base (`vrft_aug/assets/tiny_base`), SynthMed cell images at 56 px (16 image tokens), the knowledge
prompt (about 500 prompt tokens), 4 prompts x G = 8 completions of 48 tokens per step, temperature 0.7, accuracy +
format rewards, dapo loss, beta 0, learning rate 3e-5. Every completion has exactly 48 tokens (min_new_tokens), so
every step does the same work whatever the model samples.

Variants, each trainer built once:
  grpo                     trl.GRPOTrainer
  vrft                     VRFTTrainer, imitation off; shared prompt processing and shared-prefix generation (defaults)
  vrft_imitation           VRFTTrainer, imitation_coef 0.1 (each distinct demonstration scored once)
  vrft_unshared            VRFTTrainer, imitation off, both sharing switches off (what the sharing buys)
  vrft_imitation_unshared  VRFTTrainer, imitation_coef 0.1, both sharing switches off
Round after round, each trainer runs a chunk of steps, in a rotating order (a, b, c, ... / b, c, ..., a / ...), so
all see the same machine load. The first round is warm-up, and so is the first step of every chunk (each `train()`
call rebuilds the optimizer). Step times come from a `TrainerCallback` (on_step_begin -> on_step_end), split with
TRL's own profiling spans into generation, scoring, other input preparation (the processor, old log-probs,
advantages) and the update.

Reported, in wall and CPU time: median step time per variant, the ratio of medians to grpo, and the median of the
per-round ratios (the trainers of a round ran back to back, so this ratio is the least affected by load drift). The
verdict uses the CPU-time per-round ratio. Targets (issue 16): vrft/grpo <= 0.85, vrft_imitation/grpo <= 0.95.

Then the gain against prompt length: grpo and vrft on prompts of growing length (the plain prompt; the knowledge
prompt with each class description cut to 4 and to 12 words; the full knowledge prompt), interleaved the same way;
the ratio against prompt tokens is plotted to a PNG beside the JSON.

    .venv/bin/python bench/overhead.py --quick   # smoke: 2 prompts x G=4, 16 tokens, 1 measured round, 2 prompt
                                                 # lengths; writes <tmp>/vrft_aug_bench/overhead_quick.{json,png}
    .venv/bin/python bench/overhead.py           # 12 measured rounds of 2 steps per variant, then 4 prompt lengths
                                                 # x 3 measured rounds of 2 steps; writes bench/results/overhead.{json,png}
"""
from __future__ import annotations
import argparse, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (Spans, machine, median, quiet, result_path, silence_trainer, split_step, step_timer,  # noqa: E402
                    write_json)

VARIANTS = ("grpo", "vrft", "vrft_imitation", "vrft_unshared", "vrft_imitation_unshared")
TARGETS = dict(vrft=0.85, vrft_imitation=0.95)
PROMPTS = (("plain", None), ("knowledge", 4), ("knowledge", 12), ("knowledge", None))   # (variant, words per class)
QUICK_PROMPTS = (("plain", None), ("knowledge", None))

def cpu_scale(n_train: int = 64):
    "The CPU scale's run config (cpu.yaml + the vrft+imitation preset) and its GRPO stage."
    from vrft_aug.pipeline import resolve_config
    cfg = resolve_config("vrft+imitation", "cpu", overrides={"n_train": n_train})
    return cfg, next(st for st in cfg.stages if st.kind == "grpo")

def scale_dataset(cfg, processor, variant: str = "knowledge", budget: int | None = None):
    """The GRPO stage's training rows as the pipeline builds them (`pipeline._train_dataset`: prompts, demonstrations
    from the dataset's knowledge base, aliases for the accuracy reward), with each description cut to `budget` words."""
    from vrft_aug.data import to_trl
    from vrft_aug.imitation import add_demonstrations
    from vrft_aug.knowledge import load_knowledge
    from vrft_aug.pipeline import load_split
    from vrft_aug.prompts import make_prompt_fn
    kb = load_knowledge(cfg.knowledge) if cfg.knowledge else None     # None: each dataset's packaged knowledge
    ds = to_trl(load_split(cfg, cfg.dataset, "train"),
                prompt_fn=make_prompt_fn(variant, kb, options=cfg.options, seed=cfg.seed, budget=budget))
    kb = kb or load_knowledge(ds[0]["dataset"])
    ds = add_demonstrations(ds, kb, max_words=cfg.demonstration_words)
    return ds.add_column("aliases", [kb.aliases()] * len(ds))

def prompt_tokens(processor, row) -> int:
    "Tokens of a row's prompt as the model reads it (chat template, image tokens included)."
    from trl.data_utils import prepare_multimodal_messages
    conv = prepare_multimodal_messages(row["prompt"], images=[row["image"]])
    return len(processor.apply_chat_template([conv], add_generation_prompt=True, tokenize=True,
                                             return_dict=True)["input_ids"][0])

def trainer_args(cfg, st, out: Path, settings: dict, variant: str) -> dict:
    "The pipeline's GRPO arguments (`pipeline._common_args` + `_run_grpo`) for `variant`, fixed-length completions."
    from vrft_aug.rewards import build_reward_funcs
    from vrft_aug.pipeline import stage_rewards
    _, weights = build_reward_funcs(stage_rewards(cfg, st))
    L, G = settings["completion_len"], settings["G"]
    kw = dict(output_dir=str(out / variant), max_steps=1, learning_rate=st.learning_rate, seed=cfg.seed,
              per_device_train_batch_size=G * settings["prompts_per_step"], use_cpu=True, bf16=False, report_to=[],
              save_strategy="no", logging_steps=1, gradient_checkpointing=False, lr_scheduler_type="constant",
              disable_tqdm=True, dataloader_num_workers=0, num_generations=G, max_completion_length=L,
              temperature=st.temperature, beta=st.beta, loss_type=st.loss_type, reward_weights=weights,
              log_completions=False, generation_kwargs={"min_new_tokens": L})
    if variant == "grpo": return kw
    shared = not variant.endswith("_unshared")
    return dict(kw, imitation_coef=settings["imitation_coef"] if "imitation" in variant else 0.0,
                shared_prompt_processing=shared, shared_prefix_generation=shared, shared_prefix_loss=shared)

def make_trainer(variant: str, cfg, st, model_dir, processor, dataset, out: Path, settings: dict, timer):
    from trl import GRPOConfig, GRPOTrainer
    from vrft_aug.imitation import VRFTConfig, VRFTTrainer
    from vrft_aug.pipeline import stage_rewards
    from vrft_aug.rewards import build_reward_funcs
    funcs, _ = build_reward_funcs(stage_rewards(cfg, st))
    kw = trainer_args(cfg, st, out, settings, variant)
    cls, args = (GRPOTrainer, GRPOConfig(**kw)) if variant == "grpo" else (VRFTTrainer, VRFTConfig(**kw))
    return silence_trainer(cls(model=str(model_dir), reward_funcs=funcs, args=args, train_dataset=dataset,
                               processing_class=processor, callbacks=[timer]))

def interleave(trainers: dict, timers: dict, rounds: int, chunk: int, warmup_rounds: int = 1) -> dict:
    "Run `chunk` measured steps (+1 warm-up) of every trainer per round, rotating the order; measured steps per round."
    per_round, order = {k: [] for k in trainers}, list(trainers)
    for r in range(rounds):
        for k in order:
            trainers[k].args.max_steps = chunk + 1
            trainers[k].train()
            if r >= warmup_rounds: per_round[k].append(timers[k].chunk[1:])
        order = order[1:] + order[:1]
    return per_round

def ratios(per_round: dict, base: str = "grpo") -> dict:
    "Median step times and their ratios to `base` (ratio of medians, median of per-round ratios), wall and CPU."
    res, names = {}, [k for k in per_round if k != base]
    for key, name in (("step_s", "wall"), ("cpu_s", "cpu")):
        med = {k: median([s[key] for rnd in per_round[k] for s in rnd]) for k in per_round}
        res[f"median_{name}_s"] = med
        res[f"{name}_ratio_of_medians"] = {k: med[k] / med[base] for k in names}
        res[f"{name}_median_round_ratio"] = {k: median([median([s[key] for s in a]) / median([s[key] for s in g])
                                                        for a, g in zip(per_round[k], per_round[base])]) for k in names}
    return res

def plot(sweep: list[dict], path: Path):
    "Step-time ratio vrft/grpo (CPU time) and both step times against prompt tokens."
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = [p["prompt_tokens"] for p in sweep]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(x, [p["cpu_median_round_ratio"]["vrft"] for p in sweep], "o-", label="VRFTTrainer / GRPOTrainer")
    a.axhline(1.0, color="grey", lw=0.8); a.axhline(TARGETS["vrft"], color="tab:red", ls="--", lw=0.8, label="target")
    a.set_xlabel("prompt tokens (image tokens included)"); a.set_ylabel("step CPU time ratio"); a.legend()
    for k in ("grpo", "vrft"): b.plot(x, [p["median_cpu_s"][k] for p in sweep], "o-", label=k)
    b.set_xlabel("prompt tokens"); b.set_ylabel("median step CPU time (s)"); b.legend()
    fig.suptitle("Sharing each group's prompt work: gain against prompt length (CPU scale)")
    fig.tight_layout(); path.parent.mkdir(parents=True, exist_ok=True); fig.savefig(path, dpi=110); plt.close(fig)

def run(quick: bool = False, out=None, threads: int = 1) -> dict:
    import torch
    from vrft_aug.pipeline import load_processor, tiny_base_dir
    quiet(); torch.set_num_threads(threads)
    cfg, st = cpu_scale(16 if quick else 64)
    settings = dict(model="tiny-base", dataset=cfg.dataset, prompt="knowledge", G=4 if quick else st.num_generations,
                    prompts_per_step=2 if quick else st.batch_size // st.num_generations,
                    completion_len=16 if quick else st.max_completion_length, temperature=st.temperature,
                    imitation_coef=st.imitation_coef, rounds=2 if quick else 13, chunk=1 if quick else 2,
                    sweep_rounds=2 if quick else 4, warmup_rounds=1, threads=threads)
    out = result_path("overhead", quick, out)
    model_dir = tiny_base_dir()
    proc = load_processor(str(model_dir))
    start, t0 = machine(), time.perf_counter()
    res = dict(settings=settings, machine_start=start)
    with tempfile.TemporaryDirectory() as tmp, Spans() as spans:
        tmp = Path(tmp)
        ds = scale_dataset(cfg, proc, "knowledge")
        settings["prompt_tokens"] = prompt_tokens(proc, ds[0])
        timers = {v: step_timer(spans) for v in VARIANTS}
        trainers = {v: make_trainer(v, cfg, st, model_dir, proc, ds, tmp, settings, timers[v]) for v in VARIANTS}
        per_round = interleave(trainers, timers, settings["rounds"], settings["chunk"], settings["warmup_rounds"])
        del trainers
        res["raw"] = {v: [[dict(wall=round(s["step_s"], 4), cpu=round(s["cpu_s"], 4)) for s in rnd] for rnd in per_round[v]]
                      for v in VARIANTS}
        res["steps_measured"] = {v: sum(len(rnd) for rnd in per_round[v]) for v in VARIANTS}
        res.update(ratios(per_round))
        for clock in ("wall", "cpu"):
            res[f"split_median_{'s' if clock == 'wall' else 'cpu_s'}"] = {
                v: {k: median([split_step(s, clock)[k] for rnd in per_round[v] for s in rnd])
                    for k in ("step_s", "generation_s", "scoring_s", "other_prep_s", "update_s")} for v in VARIANTS}
        res["targets"] = dict(TARGETS)
        res["target_rule"] = "cpu_median_round_ratio <= target (CPU time: steadier than wall time on a shared machine)"
        res["target_met"] = {v: res["cpu_median_round_ratio"][v] <= t for v, t in TARGETS.items()}
        write_json(res, out)   # the main comparison is kept even if the sweep is cut short
        res["prompt_sweep"] = []
        for variant, budget in (QUICK_PROMPTS if quick else PROMPTS):
            ds_p = scale_dataset(cfg, proc, variant, budget)
            t = {v: step_timer(spans) for v in ("grpo", "vrft")}
            tr = {v: make_trainer(v, cfg, st, model_dir, proc, ds_p, tmp / f"{variant}{budget}", settings, t[v])
                  for v in ("grpo", "vrft")}
            pr = interleave(tr, t, settings["sweep_rounds"], settings["chunk"], settings["warmup_rounds"])
            del tr
            res["prompt_sweep"].append(dict(prompt=variant, words_per_class=budget, prompt_tokens=prompt_tokens(proc, ds_p[0]),
                                            steps_measured=sum(len(r) for r in pr["vrft"]), **ratios(pr)))
    res["machine_end"], res["seconds"] = machine(), round(time.perf_counter() - t0, 1)
    write_json(res, out)
    plot(res["prompt_sweep"], out.with_suffix(".png"))
    res["out"] = str(out)
    return res

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: small batch, 1 measured round, 2 prompt lengths")
    ap.add_argument("--out", type=Path, default=None, help="JSON output; the plot goes beside it as .png (default "
                    "bench/results/overhead.json; with --quick <tmp>/vrft_aug_bench/overhead_quick.json)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    a = ap.parse_args(argv)
    res = run(a.quick, a.out, a.threads)
    s = res["settings"]
    print(f"{s['prompts_per_step']} prompts x G={s['G']}, {s['completion_len']} tokens, prompt {s['prompt_tokens']} tokens")
    for v in VARIANTS:
        sp = res["split_median_cpu_s"][v]
        print(f"{v:24s} median step {res['median_wall_s'][v]*1e3:7.1f} ms wall, {res['median_cpu_s'][v]*1e3:7.1f} ms cpu "
              f"(gen {sp['generation_s']*1e3:.1f}, score {sp['scoring_s']*1e3:.1f}, prep {sp['other_prep_s']*1e3:.1f}, "
              f"update {sp['update_s']*1e3:.1f}) n={res['steps_measured'][v]}")
    for v in VARIANTS[1:]:
        target = f" (target <= {TARGETS[v]}: {'met' if res['target_met'][v] else 'MISSED'})" if v in TARGETS else ""
        print(f"{v}/grpo: wall {res['wall_ratio_of_medians'][v]:.3f} / {res['wall_median_round_ratio'][v]:.3f}; "
              f"cpu {res['cpu_ratio_of_medians'][v]:.3f} / {res['cpu_median_round_ratio'][v]:.3f}{target}")
    for p in res["prompt_sweep"]:
        print(f"prompt {p['prompt']:9s} words/class {str(p['words_per_class']):4s} {p['prompt_tokens']:4d} tokens: "
              f"vrft/grpo cpu {p['cpu_median_round_ratio']['vrft']:.3f}")
    print(f"load {res['machine_start']['loadavg']} -> {res['machine_end']['loadavg']}, {res['seconds']} s -> {res['out']}")

if __name__ == "__main__":
    main()

"""Throughput of every reward in vrft_aug.rewards: completions scored per second.

Builds 10,000 realistic completions per task, deterministic from a seed: BloodMNIST classification (8 classes with the
knowledge base's aliases, half the prompts with lettered options), RetinaMNIST grading (5 grades), lesion localization
(224 px images, several box formats), and the knowledge text for recitation (the injected class descriptions, one
reference per class). About 80% of completions are well formed, the rest are the malformed, hedged or empty outputs an
early policy writes. Rewards are called in batches of 64 completions (like TRL's per-step calls), the caches of the
reward module are cleared before every run (so each run pays its own cold start), and the median over runs is reported.

    .venv/bin/python bench/rewards.py --quick      # 3 runs
    .venv/bin/python bench/rewards.py              # 7 runs
"""
import argparse, copy, os, platform, random, statistics, sys, time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from vrft_aug import rewards as R  # noqa: E402
from vrft_aug import matching as M  # noqa: E402

N, BATCH, G = 10_000, 64, 8
TARGETS = {"format_reward": 100_000, "format_reward_no_think": 100_000, "accuracy_reward": 100_000,
           "mfrs_reward": 100_000, "mfrs_reward_table": 100_000, "iou_reward": 20_000, "giou_reward": 20_000,
           "visual_rft_iou_reward": 20_000, "iou_reward_norm1000": 20_000, "recitation_reward": 5_000,
           "recitation_reward_13a": 5_000}

OBSERVATIONS = ("the cell is large", "the nucleus is dark purple and round", "the cytoplasm looks pale blue",
                "there are many small granules", "the nucleus has two lobes", "granules are orange red",
                "it is about the size of a red cell", "the chromatin is clumped", "I compare it with the options",
                "the background shows pale pink red cells", "the outline is irregular", "so the best match is")

def _kb(name):
    return yaml.safe_load((ROOT / "vrft_aug" / "knowledge" / f"{name}.yaml").read_text())

def _think(rng, knowledge_texts):
    parts = [rng.choice(OBSERVATIONS) for _ in range(rng.randint(3, 8))]
    if rng.random() < 0.2:  # some completions recite part of the knowledge
        kt = rng.choice(knowledge_texts).split()
        i = rng.randint(0, max(0, len(kt) - 12)); parts.append(" ".join(kt[i:i + rng.randint(6, 20)]))
    return ". ".join(parts).capitalize() + "."

def _wrap(rng, think, answer):
    r = rng.random()
    if r < 0.80: return f"<think>{think}</think>\n<answer>{answer}</answer>"
    if r < 0.86: return f"<think>{think}</think> The answer is {answer}."          # no answer block
    if r < 0.90: return f"<think>{think}\n<answer>{answer}</answer>"              # unclosed think
    if r < 0.94: return f"{think} <answer>{answer}</answer>"                         # no think
    if r < 0.97: return f"<think>{think}</think><answer>{answer}</answer><answer>{answer}</answer>"
    return f"<think>{think}"                                                           # truncated

def classification(rng):
    kb = _kb("bloodmnist")
    names = [c["name"] for c in kb["classes"]]
    aliases = {c["name"]: c.get("aliases", []) for c in kb["classes"]}
    descs = [c["description"] for c in kb["classes"]]
    comps, cols = [], {k: [] for k in ("solution", "choices", "aliases", "task", "knowledge")}
    prompts = []
    for g in range(N // G):
        sol = rng.randrange(len(names))
        lettered = g % 2 == 0
        opts = "\n".join((f"{'ABCDEFGH'[i]}. {c['display']}" if lettered else f"- {c['display']}")
                         for i, c in enumerate(kb["classes"]))
        prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text":
                  f"{kb['description']}\nWhich cell type is this?\n{opts}\nThink in <think></think>, answer in <answer></answer>."}]}]
        for _ in range(G):
            k = rng.random()
            pick = sol if rng.random() < 0.5 else rng.randrange(len(names))
            disp = kb["classes"][pick]["display"]
            if k < 0.45: ans = disp
            elif k < 0.60: ans = f"It is a {disp.lower()}."
            elif k < 0.70: ans = "ABCDEFGH"[pick] if lettered else rng.choice(aliases[names[pick]] or [disp])
            elif k < 0.78: ans = rng.choice(aliases[names[pick]] or [disp])
            elif k < 0.86: ans = f"{disp} or {kb['classes'][rng.randrange(len(names))]['display']}"
            elif k < 0.92: ans = ""
            else: ans = disp[: max(3, len(disp) // 2)]
            comps.append([{"role": "assistant", "content": _wrap(rng, _think(rng, descs), ans)}])
            prompts.append(copy.deepcopy(prompt))  # TRL's rows are equal, not identical, objects
            cols["solution"].append(names[sol]); cols["choices"].append(list(names)); cols["aliases"].append(copy.deepcopy(aliases))
            cols["task"].append("classification"); cols["knowledge"].append(descs)
    return prompts, comps, cols

def grading(rng):
    kb = _kb("retinamnist")
    names = [c["name"] for c in kb["classes"]]
    aliases = {c["name"]: c.get("aliases", []) for c in kb["classes"]}
    descs = [c["description"] for c in kb["classes"]]
    comps, cols = [], {k: [] for k in ("grade", "num_grades", "choices", "aliases", "task")}
    for g in range(N // G):
        true = rng.randrange(5)
        for _ in range(G):
            p = min(4, max(0, true + rng.choice([-2, -1, 0, 0, 0, 1, 2])))
            ans = rng.choice([str(p), f"grade {p}", f"Grade: {p}", rng.choice(aliases[names[p]]), f"{p} or {min(4, p + 1)}", ""])
            comps.append([{"role": "assistant", "content": _wrap(rng, _think(rng, descs), ans)}])
            cols["grade"].append(true); cols["num_grades"].append(5); cols["choices"].append(names)
            cols["aliases"].append(aliases); cols["task"].append("grading")
    return [None] * len(comps), comps, cols

def localization(rng):
    comps, cols = [], {k: [] for k in ("bbox", "image_size", "task")}
    for g in range(N // G):
        x1, y1 = rng.uniform(0, 150), rng.uniform(0, 150)
        gt = [x1, y1, x1 + rng.uniform(10, 70), y1 + rng.uniform(10, 70)]
        for _ in range(G):
            b = [round(v + rng.gauss(0, 8)) for v in gt]
            k = rng.random()
            if k < 0.5: ans = f"[{b[0]}, {b[1]}, {b[2]}, {b[3]}]"
            elif k < 0.7: ans = f'[{{"bbox_2d": [{b[0]}, {b[1]}, {b[2]}, {b[3]}], "label": "lesion"}}]'
            elif k < 0.8: ans = f"({b[0]},{b[1]}),({b[2]},{b[3]})"
            elif k < 0.9: ans = f"[{b[0]}, {b[1]}, {b[2]}, {b[3]}], [{b[2]}, {b[3]}, {b[2] + 20}, {b[3] + 20}]"
            else: ans = "the lesion is in the upper left"
            comps.append([{"role": "assistant", "content": _wrap(rng, "the lesion is a dark irregular patch near the centre", ans)}])
            cols["bbox"].append(gt); cols["image_size"].append((224, 224)); cols["task"].append("localization")
    return [None] * len(comps), comps, cols

def _clear_caches():
    for f in (M._matcher, M._letters_from_text, R._bleu_scorer, M._norm_cached):
        f.cache_clear()
    R._TASK_CACHE.clear()

def _time(func, prompts, comps, cols):
    "(completions per wall second, completions per CPU second of this process) over all batches."
    wall = cpu = 0.0
    for s in range(0, len(comps), BATCH):
        kw = {k: v[s:s + BATCH] for k, v in cols.items()}
        p = prompts[s:s + BATCH]
        t0, c0 = time.perf_counter(), time.process_time()
        out = func(prompts=p, completions=comps[s:s + BATCH], completion_ids=None, trainer_state=None, **kw)
        wall += time.perf_counter() - t0; cpu += time.process_time() - c0
        assert len(out) == len(p)
    return len(comps) / wall, len(comps) / max(cpu, 1e-9)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 runs instead of 7")
    ap.add_argument("--runs", type=int, default=None, help="number of timed runs (default 7, or 3 with --quick)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    runs = a.runs or (3 if a.quick else 7)
    rng = random.Random(a.seed)
    cls, grd, loc = classification(rng), grading(rng), localization(rng)
    cases = [(R.format_reward, cls), (R.format_reward_no_think, cls), (R.accuracy_reward, cls),
             (R.mfrs_reward, grd), (R.make_mfrs_reward("table"), grd),
             (R.iou_reward, loc), (R.make_iou_reward("giou"), loc), (R.make_iou_reward("visual_rft"), loc),
             (R.make_iou_reward(coords="norm1000"), loc),
             (R.recitation_reward, cls), (R.make_recitation_reward(tokenize="13a"), cls)]
    print(f"# {len(cls[1])} completions per task, batches of {BATCH}, {runs} runs, caches cleared before each run")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| reward | completions/s (wall, median) | min | max | completions/s (CPU time, median) | target | ok |")
    print("|---|---:|---:|---:|---:|---:|:-:|")
    failed = []
    for f, (p, c, cols) in cases:
        walls, cpus = [], []
        for _ in range(runs):
            _clear_caches()
            w, cp = _time(f, p, c, cols)
            walls.append(w); cpus.append(cp)
        med, tgt = statistics.median(walls), TARGETS.get(f.__name__, 0)
        ok = med >= tgt
        if not ok: failed.append(f.__name__)
        print(f"| {f.__name__} | {med:,.0f} | {min(walls):,.0f} | {max(walls):,.0f} | {statistics.median(cpus):,.0f} | "
              f"{tgt:,} | {'yes' if ok else 'NO'} |", flush=True)
    print(f"# load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if failed: print(f"# below target: {', '.join(failed)}")
    return 0

if __name__ == "__main__":
    sys.exit(main())

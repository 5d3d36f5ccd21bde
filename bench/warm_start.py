"""How long the CPU scale's warm start should be, and on which prompts (the choice behind cpu.yaml's
`stage_defaults.warm_start`): greedy test accuracy of the committed base after N SFT steps, under the plain, knowledge
and shuffled-knowledge prompts.

The warm start stands in for the instruction tuning a real VLM brings, so it should teach the answer format on every
prompt the presets use and leave the task itself to RL: accuracy at chance, well-formed answers, no prompt favoured.
`--prompt` is what the warm start trains on: `plain+knowledge` (the pipeline's default: rows alternate), or one variant.

    .venv/bin/python bench/warm_start.py --quick                                    # smoke: 1 step, 4 test images
    OMP_NUM_THREADS=2 .venv/bin/python bench/warm_start.py --dataset synthmed-cells --steps 25,50,100
    OMP_NUM_THREADS=2 .venv/bin/python bench/warm_start.py --dataset synthmed-cells --steps 25,50 --prompt plain
"""
from __future__ import annotations
import argparse, dataclasses, json, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, quiet, result_path, write_json  # noqa: E402

EVAL_PROMPTS = ("plain", "knowledge", "shuffled-knowledge")

def one(dataset: str, steps: int, prompt: str, root: Path, quick: bool) -> dict:
    from vrft_aug.pipeline import resolve_config, run_stage, evaluate_model, resolve_model
    o = {"dataset": dataset, "output_dir": str(root), "seed": 0}
    if quick: o.update({"n_train": 8, "n_test": 4, "eval_batch_size": 4, "eval_max_new_tokens": 8,
                        "stage_defaults.sft.batch_size": 4})
    cfg = resolve_config("sft", "cpu", o)
    st = dataclasses.replace(cfg.stages[0], steps=steps)          # the warm start stage, N steps
    if prompt != "plain+knowledge": st = dataclasses.replace(st, warm_start=False, prompt=prompt)
    cfg.stages = [st]
    t0 = time.perf_counter()
    path = str(run_stage(cfg, 0, resolve_model(cfg), root / f"{prompt}-{steps}"))
    seconds = time.perf_counter() - t0
    scores = {}
    for v in EVAL_PROMPTS:
        m = evaluate_model(dataclasses.replace(cfg, prompt=v), path, progress=False)["metrics"]
        scores[v] = dict(accuracy=m["accuracy"], well_formed=m["well_formed"])
    return dict(dataset=dataset, steps=steps, trained_on=prompt, train_seconds=round(seconds, 1), scores=scores)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="synthmed-cells")
    ap.add_argument("--steps", default="25,50,100", help="comma-separated warm-start lengths")
    ap.add_argument("--prompt", default="plain+knowledge", help="what the warm start trains on")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 step, 4 test images, tmp output")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    quiet()
    if a.quick: a.steps = "1"
    out = result_path(f"warm_start_{a.dataset}_{a.prompt}", a.quick, a.out)
    res = dict(settings=dict(dataset=a.dataset, prompt=a.prompt, eval_prompts=EVAL_PROMPTS), machine_start=machine(), runs=[])
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in a.steps.split(",")]:
            res["runs"].append(one(a.dataset, n, a.prompt, Path(tmp), a.quick))
            print(json.dumps(res["runs"][-1]), flush=True)
            write_json(res, out)
    res["machine_end"] = machine()
    write_json(res, out)
    print(f"-> {out}")
    return res

if __name__ == "__main__":
    main()

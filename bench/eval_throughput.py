"""Evaluation throughput: test samples per second with batched greedy decoding against one sample at a time.

`vrft_aug.evaluate.evaluate` (greedy decoding, parsing, scoring, metrics) runs on a SynthMed test split with the tiny
model at batch sizes 1, 16 and 32. The batch sizes alternate over repeats (after a warm-up call) and the median of
the repeats is reported, with the speed-up of each batch size over batch size 1 measured in the same run. The mean
completion length is reported too: a batch decodes until its longest member stops, so the speed-up depends on it.

    .venv/bin/python bench/eval_throughput.py --quick   # 32 samples, 16 new tokens, 1 repeat
    .venv/bin/python bench/eval_throughput.py           # 64 samples, 32 new tokens, 3 repeats
"""
from __future__ import annotations
import argparse, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import result_path, machine, median, quiet, tiny_model, write_json  # noqa: E402

BATCH_SIZES = (1, 16, 32)

def run(quick: bool = False, out=None, threads: int = 1) -> dict:
    import torch
    from vrft_aug.data import synthmed
    from vrft_aug.evaluate import evaluate
    from vrft_aug.tiny import load_tiny_vlm
    quiet(); torch.set_num_threads(threads)
    n, new_tokens, repeats = (32, 16, 1) if quick else (64, 32, 3)
    settings = dict(n=n, max_new_tokens=new_tokens, repeats=repeats, batch_sizes=BATCH_SIZES, size="test",
                    task="cells", image_size=56, threads=threads)
    res = dict(settings=settings, machine_start=machine())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model, proc = load_tiny_vlm(tiny_model(Path(tmp) / "tiny", "test", max_side=56))
    split = synthmed("cells", "test", n=n, seed=0, image_size=56)
    ds = [split[i] for i in range(n)]   # SynthMed draws lazily: draw once, so every run times decoding, not drawing
    evaluate(model, proc, ds, batch_size=4, max_new_tokens=new_tokens, limit=8, progress=False)  # warm-up
    times = {b: [] for b in BATCH_SIZES}
    lengths = {}
    order = list(BATCH_SIZES)
    for _r in range(repeats):
        for b in order:
            r = evaluate(model, proc, ds, batch_size=b, max_new_tokens=new_tokens, progress=False)
            times[b].append(r.seconds); lengths[b] = r.metrics["mean_length"]
        order = order[1:] + order[:1]
    res["machine_end"], res["seconds"] = machine(), round(time.perf_counter() - t0, 1)
    res["median_seconds"] = {str(b): median(times[b]) for b in BATCH_SIZES}
    res["samples_per_s"] = {str(b): n / median(times[b]) for b in BATCH_SIZES}
    res["speedup_vs_batch1"] = {str(b): res["samples_per_s"][str(b)] / res["samples_per_s"]["1"] for b in BATCH_SIZES}
    res["mean_completion_tokens"] = {str(b): lengths[b] for b in BATCH_SIZES}
    res["raw_seconds"] = {str(b): times[b] for b in BATCH_SIZES}
    write_json(res, result_path("eval_throughput", quick, out))
    return res

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="32 samples, 16 tokens, 1 repeat (smoke test)")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/eval_throughput.json; with --quick <tmp>/vrft_aug_bench/eval_throughput_quick.json)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    a = ap.parse_args(argv)
    res = run(a.quick, a.out, a.threads)
    for b in BATCH_SIZES:
        print(f"batch {b:3d}: {res['samples_per_s'][str(b)]:7.2f} samples/s  (x{res['speedup_vs_batch1'][str(b)]:.2f} vs "
              f"batch 1, mean completion {res['mean_completion_tokens'][str(b)]:.1f} tokens)")
    print(f"load {res['machine_start']['loadavg']} -> {res['machine_end']['loadavg']}, {res['seconds']} s")

if __name__ == "__main__":
    main()

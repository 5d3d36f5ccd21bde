"""Shared pieces of the benchmark scripts: the machine description, the tiny model and SynthMed training set, GRPO
settings for CPU, a per-step timer (a `TrainerCallback`) and a recorder of TRL's own profiling spans.

Every benchmark writes one JSON file (default `bench/results/<name>.json`) holding its settings, the machine it ran on
(with the load average at start and end: the development machine has 2 cores shared with other processes) and its
numbers. Nothing here downloads anything."""
from __future__ import annotations
import json, os, platform, statistics, sys, tempfile, time, warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
for k, v in dict(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                 TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg").items():
    os.environ.setdefault(k, v)

def loadavg() -> list[float]:
    "1, 5 and 15 minute load averages (what `uptime` prints)."
    return [round(x, 2) for x in os.getloadavg()]

def machine() -> dict:
    "Where a benchmark ran: CPU model and count, torch threads, library versions, the load average right now."
    import torch, transformers, trl
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"): cpu = line.split(":", 1)[1].strip(); break
    except OSError: pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"): mem = round(int(line.split()[1]) / 2**20, 1); break
    except OSError: pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return dict(host=platform.node(), cpu=cpu, cpu_count=os.cpu_count(), mem_gib=mem, gpu=gpu,
                torch_threads=torch.get_num_threads(), python=platform.python_version(), torch=torch.__version__,
                transformers=transformers.__version__, trl=trl.__version__, loadavg=loadavg(),
                utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

SMOKE_RESULTS = Path(tempfile.gettempdir()) / "vrft_aug_bench"

def result_path(name: str, smoke: bool = False, out=None) -> Path:
    """Where a benchmark writes its JSON: `out` when given; a full run to `bench/results/<name>.json`; a smoke run
    (`--quick`, `--toy`) to `<tmp>/vrft_aug_bench/<name>_quick.json`, so trying a script never leaves files beside
    the committed results."""
    if out is not None: return Path(out)
    return SMOKE_RESULTS / f"{name}_quick.json" if smoke else RESULTS / f"{name}.json"

def curve_point(res: dict, out, step: int, window: list, t0: float, **scores) -> dict:
    "Append one learning-curve point to `res['curve']` (mean loss since the last point, `scores`, seconds), print it, save `res`."
    import numpy as np
    res["curve"].append(dict(step=step, loss=round(float(np.mean(window)), 4), **scores, seconds=round(time.perf_counter() - t0, 1)))
    print(res["curve"][-1], flush=True); write_json(res, out)
    return res["curve"][-1]

def finish(res: dict, out, t0: float) -> dict:
    "Stamp the machine at the end and the total seconds, save, and return `res` with its path under `out`."
    res["machine_end"], res["seconds"] = machine(), round(time.perf_counter() - t0, 1)
    write_json(res, out); res["out"] = str(out)
    return res

def median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return float(statistics.median(xs)) if xs else float("nan")

def write_json(obj: dict, path) -> Path:
    "Write `obj` as indented JSON to `path` (folders created); returns the path."
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=str))
    return path

def quiet():
    "Silence the warnings and progress bars that flood a benchmark's output."
    warnings.filterwarnings("ignore")
    import datasets, transformers
    transformers.logging.set_verbosity_error(); datasets.disable_progress_bar()

# ---------------------------------------------------------------------------------------------------- model and data
def tiny_model(folder, size: str = "test", max_side: int = 112, seed: int = 0) -> Path:
    "Build (once) the offline tiny Qwen2.5-VL in `folder`, its processor taking images up to `max_side` px square."
    from vrft_aug.tiny import build_tiny_vlm
    folder = Path(folder)
    if not (folder / "tiny_manifest.json").exists():
        build_tiny_vlm(folder, seed=seed, size=size, min_pixels=56 * 56, max_pixels=max_side * max_side)
    return folder

def train_dataset(n: int = 16, image_size: int = 56, task: str = "cells", variant: str = "plain", seed: int = 0):
    "SynthMed rows in TRL's format (`data.to_trl` with `prompts.make_prompt_fn`), with a demonstration column."
    from vrft_aug.data import synthmed, to_trl
    from vrft_aug.prompts import make_prompt_fn
    from vrft_aug.imitation import add_demonstrations
    ds = to_trl(synthmed(task, "train", n=n, seed=seed, image_size=image_size), prompt_fn=make_prompt_fn(variant))
    return add_demonstrations(ds)

def reward_funcs():
    "The V-RFT base rewards (accuracy + format), built by `vrft_aug.rewards.build_reward_funcs`."
    from vrft_aug.rewards import build_reward_funcs
    return build_reward_funcs({"accuracy": 1.0, "format": 1.0})

def grpo_args(output_dir, G: int = 4, completion_len: int = 32, prompts_per_step: int = 2, fixed_length: bool = True,
              **kw) -> dict:
    """`GRPOConfig` keywords for a CPU run: G completions per prompt, `prompts_per_step` prompts per optimizer step.
    `fixed_length` forces every completion to `completion_len` tokens (min_new_tokens), so the work per step does not
    depend on when a random model happens to sample EOS."""
    args = dict(output_dir=str(output_dir), use_cpu=True, bf16=False, report_to=[], gradient_checkpointing=False,
                per_device_train_batch_size=G * prompts_per_step, num_generations=G,
                max_completion_length=completion_len, learning_rate=1e-5, max_steps=1, logging_steps=1, seed=0,
                save_strategy="no", disable_tqdm=True, lr_scheduler_type="constant", dataloader_num_workers=0,
                log_completions=False)
    if fixed_length: args["generation_kwargs"] = {"min_new_tokens": completion_len}
    args.update(kw)
    return args

# ------------------------------------------------------------------------------------------------------------ timing
class Spans:
    """Records TRL's own profiling spans (`profiling_decorator` / `profiling_context`: `transformers.generate`,
    `_calculate_rewards`, each reward function, `_prepare_inputs`, `compute_loss`, ...) with their wall and CPU time,
    by wrapping `ProfilingContext.__enter__/__exit__` (TRL opens these contexts whatever `report_to` is)."""
    def __init__(self):
        self.events: list[tuple[str, float, float]] = []

    def __enter__(self):
        from trl.extras import profiling
        self._cls = profiling.ProfilingContext
        self._orig = (self._cls.__enter__, self._cls.__exit__)
        events, (enter, exit_) = self.events, self._orig
        def __enter__(ctx):
            ctx._bench_t0, ctx._bench_c0 = time.perf_counter(), time.process_time()
            return enter(ctx)
        def __exit__(ctx, *exc):
            name = ctx.name.split(".", 1)[-1]   # drop the trainer-class prefix
            events.append((name, time.perf_counter() - ctx._bench_t0, time.process_time() - ctx._bench_c0))
            return exit_(ctx, *exc)
        self._cls.__enter__, self._cls.__exit__ = __enter__, __exit__
        return self

    def __exit__(self, *exc):
        self._cls.__enter__, self._cls.__exit__ = self._orig
        return False

    def take(self) -> dict[str, dict[str, float]]:
        "Per span name, the summed wall and CPU seconds since the last call; then forget them."
        out = defaultdict(lambda: dict(wall=0.0, cpu=0.0))
        for name, w, c in self.events: out[name]["wall"] += w; out[name]["cpu"] += c
        self.events.clear()
        return {k: dict(v) for k, v in out.items()}

def _step_timer_cls():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Per optimizer step: `step_s` (wall) and `cpu_s` (this process's CPU time) from on_step_begin to on_step_end
        (generation, scoring, forward, backward, optimizer), `iter_s` from one on_step_end to the next (adds the data
        loader's fetch and collation), and the TRL spans that ran inside the step (when a `Spans` recorder is given).
        CPU time is the steadier measure on a shared machine: other processes' load stretches wall time, not it."""
        def __init__(self, spans: Spans | None = None):
            self.spans, self.steps, self._t0, self._c0, self._last_end, self.chunk = spans, [], None, None, None, []

        def on_train_begin(self, args, state, control, **kw):
            self._last_end = None; self.chunk = []

        def on_step_begin(self, args, state, control, **kw):
            if self.spans is not None: self.spans.take()   # drop what ran between steps
            self._t0, self._c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            t, c = time.perf_counter(), time.process_time()
            rec = dict(step_s=t - self._t0, cpu_s=c - self._c0, iter_s=(t - self._last_end) if self._last_end is not None else None)
            if self.spans is not None: rec["spans"] = self.spans.take()
            self._last_end = t
            self.steps.append(rec); self.chunk.append(rec)

    return StepTimer

def step_timer(spans: Spans | None = None):
    "A fresh `StepTimer` callback (see its docstring)."
    return _step_timer_cls()(spans)

def silence_trainer(trainer):
    "Drop the callback that prints every log dict (disable_tqdm=True installs it); the timers keep running."
    from transformers.trainer_callback import PrinterCallback
    trainer.remove_callback(PrinterCallback)
    return trainer

def split_step(rec: dict, clock: str = "wall") -> dict:
    """One step split into generation, scoring (rewards), the rest of input preparation (prompt processing, image
    preprocessing, old/ref log-probs, advantages) and the update (loss forward, backward, optimizer step), in wall
    (`clock="wall"`) or CPU seconds (`"cpu"`)."""
    s = {k: (v[clock] if isinstance(v, dict) else v) for k, v in rec.get("spans", {}).items()}
    total = rec["step_s" if clock == "wall" else "cpu_s"]
    prep = s.get("_prepare_inputs", 0.0)
    gen = s.get("transformers.generate", 0.0)
    score = s.get("_calculate_rewards", 0.0)
    return dict(step_s=total, generation_s=gen, scoring_s=score, other_prep_s=max(0.0, prep - gen - score),
                update_s=max(0.0, total - prep))

def rss_mb() -> dict:
    "Current and peak resident set size of this process in MiB (/proc/self/status; ru_maxrss as a fallback)."
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS", "VmHWM")): out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError: pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(rss_mb=round(out.get("VmRSS", float("nan")), 1), peak_rss_mb=round(out.get("VmHWM", peak), 1))

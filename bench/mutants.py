"""Mutation check: plant one realistic bug at a time in a scratch copy of the library and run the tests that should
catch it; a mutant that passes them "survives". The list below is the project's: every entry must be killed.

    python bench/mutants.py              # every mutant (about 20 minutes on 2 shared cores, most of it the resume chain, run 3 times)
    python bench/mutants.py --only mfrs-off-by-one --keep
    python bench/mutants.py --check      # every mutant still applies (its source text occurs exactly once)

Each mutant is an exact source replacement in vrft_aug/*.py (the generated modules: what the tests import), with the
pytest arguments that should fail. The copy is made per mutant in a temporary folder (vrft_aug/, tests/, pyproject.toml)
and imported first through PYTHONPATH, so the checkout is never touched. Exit status 1 when a mutant survives, 2 when
a mutant no longer applies or its tests fail before mutation.
"""
from __future__ import annotations
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

@dataclass(frozen=True)
class Mutant:
    name: str
    file: str          # relative to vrft_aug/
    old: str           # exact source text, occurring once
    new: str
    tests: tuple       # pytest arguments that must fail on the mutant
    why: str = ""

MUTANTS = [
    Mutant("accuracy-substring-match", "matching.py",
           'self._mention = re.compile(r"(?<![^ ])(?:" + "|".join(map(re.escape, alts)) + r")(?![^ ])") if alts else None',
           'self._mention = re.compile(r"(?:" + "|".join(map(re.escape, alts)) + r")") if alts else None',
           ("tests/test_scoring.py", "-k", "accuracy or matcher"), "class names matched without word boundaries"),
    Mutant("iou-y-by-width-ratio", "boxes.py",
           "sx, sy = size[0] / model_size[0], size[1] / model_size[1]",
           "sx, sy = size[0] / model_size[0], size[0] / model_size[0]",
           ("tests/test_scoring.py", "-k", "iou"), "iou_reward rescales y with the width ratio"),
    Mutant("eval-box-y-by-width-ratio", "evaluate.py",
           "pred = (pred[0] * W / w, pred[1] * H / h, pred[2] * W / w, pred[3] * H / h)",
           "pred = (pred[0] * W / w, pred[1] * W / w, pred[2] * W / w, pred[3] * W / w)",
           ("tests/test_scoring.py", "-k", "evaluation_maps_boxes"), "evaluation rescales y with the width ratio"),
    Mutant("macro-f1-as-micro", "evaluate.py",
           'f1_score(y, p, labels=labels, average="macro", zero_division=0)',
           'f1_score(y, p, labels=labels, average="micro", zero_division=0)',
           ("tests/test_scoring.py", "-k", "macro or kappa"), "macro-F1 computed as micro-F1"),
    Mutant("qwk-linear-weights", "evaluate.py",
           'cohen_kappa_score(y, q, weights="quadratic", labels=labels)',
           'cohen_kappa_score(y, q, weights="linear", labels=labels)',
           ("tests/test_scoring.py", "-k", "kappa"), "quadratic-weighted kappa computed with linear weights"),
    Mutant("stage-key-ignores-learning-rate", "pipeline.py",
           "stage=asdict(st), dataset=_stage_dataset(cfg, st)",
           'stage={k: v for k, v in asdict(st).items() if k != "learning_rate"}, dataset=_stage_dataset(cfg, st)',
           ("tests/test_stage_key.py",), "two configs differing only in the learning rate share a stage"),
    Mutant("stage-key-ignores-n-train", "pipeline.py",
           'STAGE_KEY_FIELDS = ("n_train", "seed",', 'STAGE_KEY_FIELDS = ("seed",',
           ("tests/test_stage_key.py",), "a run field dropped from the key (the enumeration must notice)"),
    Mutant("imitation-coef-ignored", "imitation.py",
           "loss = loss + self.args.imitation_coef * imitation_loss(logps, mask, num_items=n, weights=counts)",
           "loss = loss + imitation_loss(logps, mask, num_items=n, weights=counts)",
           ("tests/test_trainer.py", "-k", "mu_times"), "mu ignored: the imitation term always has weight 1"),
    Mutant("imitation-coef-applied-twice", "imitation.py",
           "loss = loss + self.args.imitation_coef * imitation_loss(logps, mask, num_items=n, weights=counts)",
           "loss = loss + self.args.imitation_coef * self.args.imitation_coef * imitation_loss(logps, mask, num_items=n, weights=counts)",
           ("tests/test_trainer.py", "-k", "mu_times"), "mu applied twice"),
    Mutant("mfrs-off-by-one", "rewards.py",
           "vals = None if g is None or K is None else [mfrs_value(d, scheme, K, mfrs_power) for d in range(K)]",
           "vals = None if g is None or K is None else [mfrs_value(d + 1, scheme, K, mfrs_power) for d in range(K)]",
           ("tests/test_scoring.py", "-k", "mfrs"), "MFRS credit read at distance + 1"),
    Mutant("mfrs-table-off-by-one", "rewards.py",
           "if scheme == \"table\": return _MFRS_TABLE[d] if d < len(_MFRS_TABLE) else 0.0",
           "if scheme == \"table\": return _MFRS_TABLE[d - 1] if d < len(_MFRS_TABLE) else 0.0",
           ("tests/test_scoring.py", "-k", "mfrs"), "the table scheme indexed off by one"),
    Mutant("format-text-after-answer", "core.py",
           "and (l + 9 == len(text) or text[l + 9:].isspace())):",
           "):",
           ("tests/test_scoring.py", "-k", "format"), "the format reward's fast path accepts text after </answer>"),
    Mutant("parse-text-after-answer", "core.py",
           r'_WELL_FORMED = re.compile(rf"\s*<think>{_BODY}</think>\s*<answer>{_BODY}</answer>\s*", re.S)',
           r'_WELL_FORMED = re.compile(rf"\s*<think>{_BODY}</think>\s*<answer>{_BODY}</answer>.*", re.S)',
           ("tests/test_scoring.py", "-k", "format"), "parse_completion calls text after </answer> well formed"),
    Mutant("synthmed-splits-share-the-train-stream", "data.py",
           "SYNTHMED_TASKS.index(task), SYNTHMED_SPLITS.index(split), *rest])",
           'SYNTHMED_TASKS.index(task), SYNTHMED_SPLITS.index("train"), *rest])',
           ("tests/test_data.py", "-k", "synthmed_val"), "val/test drawn from the train stream"),
    Mutant("synthmed-images-from-the-train-stream", "data.py",
           "rng, y = _synthmed_rng(seed, task, split, i), labels[i]",
           'rng, y = _synthmed_rng(seed, task, "train", i), labels[i]',
           ("tests/test_data.py", "-k", "synthmed_val"), "val/test images drawn from the train stream"),
    Mutant("resume-trusts-half-written-checkpoints", "pipeline.py",
           "good = [p for p in ckpts if _complete(p, num_processes)]", "good = ckpts",
           ("tests/test_resume.py", "-k", "last_checkpoint"), "a checkpoint a kill left half-written is resumed from"),
    # the two below run the kill-and-resume chain (about 4 minutes each)
    Mutant("resume-with-the-trainers-weight-loader", "pipeline.py",
           "else: _load_weights(m, Path(resume_from_checkpoint))",
           "else: super()._load_from_checkpoint(resume_from_checkpoint, model)",
           ("tests/test_resume.py", "-k", "killed"), "the Trainer's loader, which matches no Qwen2.5-VL weight name"),
    Mutant("resume-trains-past-the-last-step", "pipeline.py",
           "if state.global_step >= trainer.args.max_steps:", "if False:",
           ("tests/test_resume.py", "-k", "killed"), "a stage killed after its last checkpoint trains one step more"),
]

def _copy(dst: Path):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for d in ("vrft_aug", "tests"): shutil.copytree(ROOT / d, dst / d, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")

def _source(m: Mutant, root: Path) -> str:
    "The mutated text of `m.file` under `root`; fails unless the mutant's source text occurs exactly once."
    src = (root / "vrft_aug" / m.file).read_text()
    n = src.count(m.old)
    if n != 1: raise ValueError(f"mutant {m.name}: its source text occurs {n} times in vrft_aug/{m.file} (expected 1): "
                                f"update the mutant to the current code\n  {m.old}")
    return src.replace(m.old, m.new)

def _apply(m: Mutant, root: Path): (root / "vrft_aug" / m.file).write_text(_source(m, root))

def _pytest(root: Path, tests: tuple) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("IN_TEST", None)
    r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                       cwd=root, env=env, capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip().splitlines()[-1] if (r.stdout + r.stderr).strip() else ""

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    p.add_argument("--check", action="store_true", help="only check that every mutant applies to the current code")
    p.add_argument("--keep", action="store_true", help="keep the scratch copies (their paths are printed)")
    p.add_argument("--skip-baseline", action="store_true",
                   help="do not first check that each mutant's tests pass on the unmutated copy")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    names = [m.name for m in MUTANTS]
    if len(set(names)) != len(names): raise SystemExit("duplicate mutant names")
    todo = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.only and len(todo) != len(args.only):
        raise SystemExit(f"unknown mutant(s) {sorted(set(args.only) - set(names))}; known: {names}")
    try:
        for m in todo: _source(m, ROOT)   # every mutant applies before anything runs
    except ValueError as e: print(e, file=sys.stderr); return 2
    if args.check:
        print(f"{len(todo)} mutants apply"); return 0
    results, baseline = [], {}
    for m in todo:
        if m.tests not in baseline and not args.skip_baseline:   # the tests must pass before mutation, or a failure says nothing
            with tempfile.TemporaryDirectory() as d:
                _copy(Path(d)); rc, last = _pytest(Path(d), m.tests)
            baseline[m.tests] = rc
            if rc != 0:
                print(f"ERROR {m.name}: `pytest {' '.join(m.tests)}` fails before mutation: {last}", file=sys.stderr)
                return 2
        d = Path(tempfile.mkdtemp(prefix=f"mutant-{m.name}-"))
        t0 = time.perf_counter()
        try:
            _copy(d); _apply(m, d)
            rc, last = _pytest(d, m.tests)
        finally:
            if not args.keep: shutil.rmtree(d, ignore_errors=True)
        status = "killed" if rc == 1 else "SURVIVED" if rc == 0 else f"error (pytest rc={rc})"
        results.append(dict(name=m.name, file=m.file, why=m.why, tests=list(m.tests), status=status,
                            seconds=round(time.perf_counter() - t0, 1), pytest=last))
        print(f"{status:9s} {m.name:42s} {time.perf_counter() - t0:5.1f}s  {last}" + (f"  [{d}]" if args.keep else ""),
              flush=True)
    survivors = [r["name"] for r in results if r["status"] != "killed"]
    print(f"{len(results) - len(survivors)}/{len(results)} mutants killed" +
          (f"; not killed: {', '.join(survivors)}" if survivors else ""))
    if args.out: Path(args.out).write_text(json.dumps(dict(results=results, survivors=survivors), indent=1))
    return 1 if survivors else 0

if __name__ == "__main__":
    sys.exit(main())

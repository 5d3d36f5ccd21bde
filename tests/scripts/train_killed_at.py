"""`vrft-aug train ...` that SIGKILLs itself at one named point: a real kill -9, at an exact place instead of a race
with a polling parent. Used by tests/test_resume.py.

    python train_killed_at.py POINT -- <vrft-aug train arguments>

POINT is one of
    sft-checkpoint:N    inside the SFT stage's save of checkpoint-N: weights and optimizer written, RNG state and
                        trainer_state.json not (what a kill while a checkpoint is written leaves)
    grpo-step:N         in the GRPO stage, after step N finished, before step N+1 updates anything (between checkpoints)
    grpo-checkpoint:N   in the GRPO stage, right after checkpoint-N is complete
    final               after a stage's final model is written to final.tmp/, before it is renamed to final/
    evaluate            after evaluation generated its completions, before metrics.json is written
    metrics             after metrics.json.tmp is written, before it is renamed to metrics.json
    none                no kill
"""
import os, signal, sys
from pathlib import Path

def _die(): os.kill(os.getpid(), signal.SIGKILL)

def install(point: str):
    import transformers
    from trl import GRPOTrainer, SFTTrainer
    what, _, n = point.partition(":")
    n = int(n) if n else None
    if what == "sft-checkpoint":
        orig = transformers.Trainer._save_rng_state
        def save_rng(self, output_dir):
            if isinstance(self, SFTTrainer) and self.state.global_step == n: _die()
            return orig(self, output_dir)
        transformers.Trainer._save_rng_state = save_rng
    elif what == "grpo-step":
        orig = GRPOTrainer.training_step
        def training_step(self, *a, **k):
            if self.state.global_step == n: _die()
            return orig(self, *a, **k)
        GRPOTrainer.training_step = training_step
    elif what == "grpo-checkpoint":
        orig = transformers.Trainer._save_checkpoint
        def save_checkpoint(self, *a, **k):
            out = orig(self, *a, **k)
            if isinstance(self, GRPOTrainer) and self.state.global_step == n: _die()
            return out
        transformers.Trainer._save_checkpoint = save_checkpoint
    elif what in ("final", "metrics"):
        orig = os.replace
        name = {"final": "final.tmp", "metrics": "metrics.json.tmp"}[what]
        def replace(src, dst, *a, **k):
            if Path(src).name == name: _die()
            return orig(src, dst, *a, **k)
        os.replace = replace
    elif what == "evaluate":
        import vrft_aug.evaluate as E
        orig = E.evaluate
        def evaluate(*a, **k):
            orig(*a, **k); _die()
        E.evaluate = evaluate
    elif what != "none": raise SystemExit(f"unknown kill point {point!r}")

if __name__ == "__main__":
    point, sep, *args = sys.argv[1:]
    assert sep == "--", sys.argv
    install(point)
    from vrft_aug.cli import main
    sys.exit(main(["train", *args]))

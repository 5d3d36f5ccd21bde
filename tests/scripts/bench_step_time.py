"""Step time of VRFTTrainer(imitation_coef=0) vs plain GRPOTrainer on the same tiny config.

Alternates the two trainers in blocks (ROUNDS x STEPS steps each, so >= 20 steps per trainer) and reports the median of
TRL's own `step_time` metric. Usage: python tests/scripts/bench_step_time.py [ROUNDS] [STEPS] [MU]"""
import json, statistics, sys, tempfile, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))
from vrft_toy import toy_dataset, length_reward, contains_solution, base_args  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402
from vrft_aug.imitation import VRFTConfig, VRFTTrainer  # noqa: E402
from vrft_aug.tiny import build_tiny_vlm, load_tiny_vlm  # noqa: E402

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
mu = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
tmp = Path(tempfile.mkdtemp())
model = build_tiny_vlm(tmp / "tiny", seed=0, size="test")
_, proc = load_tiny_vlm(model)
ds = toy_dataset(8)
times = {"GRPOTrainer": [], f"VRFTTrainer(mu={mu:g})": []}
for r in range(rounds):
    for name in times:
        cls, cfg = (GRPOTrainer, GRPOConfig) if name == "GRPOTrainer" else (VRFTTrainer, VRFTConfig)
        kw = {} if cls is GRPOTrainer else {"imitation_coef": mu}
        tr = cls(model=str(model), reward_funcs=[length_reward, contains_solution], train_dataset=ds,
                 processing_class=proc, args=cfg(**base_args(tmp / "out", max_steps=steps + 1, seed=r, **kw)))
        tr.train()
        st = [h["step_time"] for h in tr.state.log_history if "step_time" in h]
        times[name] += st[1:]   # drop each run's first (warm-up) step
res = {k: dict(n=len(v), median_s=statistics.median(v), min_s=min(v), max_s=max(v)) for k, v in times.items()}
print(json.dumps(res, indent=1))

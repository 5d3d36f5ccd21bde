"""Run 2 VRFTTrainer steps on the tiny model and write the logged reward statistics to JSON.

Single process:   python dist_grpo.py MODEL_DIR OUT.json 8
Two processes:    ACCELERATE_USE_CPU=true OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 dist_grpo.py MODEL_DIR OUT.json 4
The last argument is per_device_train_batch_size (completions per process), so both runs see a global batch of 8."""
import json, os, sys, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))
from vrft_toy import toy_dataset, position_reward, base_args  # noqa: E402
from vrft_aug.imitation import VRFTConfig, VRFTTrainer  # noqa: E402
from vrft_aug.tiny import load_tiny_vlm  # noqa: E402

model_dir, out, per_device = sys.argv[1], sys.argv[2], int(sys.argv[3])
world = int(os.environ.get("WORLD_SIZE", "1"))
_, proc = load_tiny_vlm(model_dir)
args = VRFTConfig(**base_args(Path(out).parent / f"run{world}", per_device_train_batch_size=per_device,
                              scale_rewards="batch", imitation_coef=0.5, beta=0.05, max_steps=2))
tr = VRFTTrainer(model=model_dir, reward_funcs=[position_reward], args=args, train_dataset=toy_dataset(8),
                 processing_class=proc)
assert tr.accelerator.num_processes == world, (tr.accelerator.num_processes, world)
tr.train()
if tr.accelerator.is_main_process:
    keys = ("reward", "reward_std", "rewards/position_reward/mean", "rewards/position_reward/std", "frac_reward_zero_std")
    steps = [{k: h[k] for k in keys} | {"has_imitation": "imitation/loss" in h} for h in tr.state.log_history if "reward" in h]
    Path(out).write_text(json.dumps(dict(num_processes=tr.accelerator.num_processes, steps=steps,
                                         advantages=list(tr._logs["advantages"]), prompts=len(tr._logs["prompt"]))))

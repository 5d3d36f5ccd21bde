"""Train 2 steps of the checked VRFTTrainer (tests/scripts/dedup_check.py) and write each rank's records to JSON.

    ACCELERATE_USE_CPU=true OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 dist_dedup.py MODEL_DIR OUT_PREFIX
Each rank writes OUT_PREFIX.rank<r>.json. Per process: 2 completions per micro-batch, 2 accumulation steps."""
import json, os, sys, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))
from vrft_toy import toy_dataset, length_reward, base_args  # noqa: E402
from dedup_check import CheckedVRFTTrainer  # noqa: E402
from vrft_aug.imitation import VRFTConfig  # noqa: E402
from vrft_aug.tiny import load_tiny_vlm  # noqa: E402

model_dir, prefix = sys.argv[1], sys.argv[2]
_, proc = load_tiny_vlm(model_dir)
args = VRFTConfig(**base_args(Path(prefix).parent / "run", per_device_train_batch_size=2, gradient_accumulation_steps=2,
                              imitation_coef=1.0, beta=0.05, max_steps=2))
tr = CheckedVRFTTrainer(model=model_dir, reward_funcs=[length_reward], args=args, train_dataset=toy_dataset(8),
                        processing_class=proc)
tr.train()
rank = tr.accelerator.process_index
Path(f"{prefix}.rank{rank}.json").write_text(json.dumps(dict(num_processes=tr.accelerator.num_processes,
                                                             records=tr.records)))

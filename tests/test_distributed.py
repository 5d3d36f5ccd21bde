"""Data-parallel VRFTTrainer on CPU (gloo, 2 processes via torchrun) logs the same reward statistics as one process.

Groups and advantages are computed on rewards gathered from every process; with `scale_rewards="batch"` the std is
over the global batch, so a missing gather would change the advantages. The reward is deterministic (it depends on the
sample and the slot in its group, not on the sampled text), so the two runs must agree exactly."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "dist_grpo.py"

def _env():
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "VRFT_TOY_G": "4",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"): env.pop(k, None)
    return env

@pytest.mark.slow
def test_two_processes_log_the_same_reward_statistics(tmp_path):
    from vrft_aug.tiny import build_tiny_vlm
    model = build_tiny_vlm(tmp_path / "tiny", seed=0, size="test")
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    r1 = subprocess.run([sys.executable, str(SCRIPT), str(model), str(one), "8"], env=_env(), cwd=tmp_path,
                        capture_output=True, text=True, timeout=300)
    assert r1.returncode == 0, r1.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    r2 = subprocess.run(torchrun + [str(SCRIPT), str(model), str(two), "4"], env=_env(), cwd=tmp_path,
                        capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert (a["num_processes"], b["num_processes"]) == (1, 2)
    assert len(a["steps"]) == len(b["steps"]) == 2 and all(s["has_imitation"] for s in a["steps"] + b["steps"])
    assert a["prompts"] == b["prompts"] == 8                       # rank 0 logged every completion of the global batch
    for sa, sb in zip(a["steps"], b["steps"]):
        for k in sa: assert sa[k] == pytest.approx(sb[k], abs=1e-6), (k, sa, sb)
    assert a["steps"][0]["reward_std"] > 0
    assert a["advantages"] == pytest.approx(b["advantages"], abs=1e-5)   # the last step's, gathered over ranks
    assert len(set(round(x, 4) for x in a["advantages"])) > 2

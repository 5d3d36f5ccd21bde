"""Reliability of the pipeline: invalid configs fail before anything is written; the accelerate configs load and resolve.
Kill-and-resume on the real configuration is tests/test_resume.py."""
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = [str(Path(sys.executable).with_name("vrft-aug"))]  # the installed console script
TINY = ["--model", "tiny-random:test", "--n-train", "16", "--n-test", "8", "--eval-batch-size", "8",
        "--eval-max-new-tokens", "8", "--save-steps", "2",
        "--set", "stage_defaults.sft.steps=2", "--set", "stage_defaults.sft.batch_size=4",
        "--set", "stage_defaults.grpo.steps=6", "--set", "stage_defaults.grpo.batch_size=8",
        "--set", "stage_defaults.grpo.num_generations=4", "--set", "stage_defaults.grpo.max_completion_length=8"]

def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    env.pop("IN_TEST", None)
    return env

def _train(out, *extra, **kw):
    return subprocess.run(CLI + ["train", "--preset", "vrft", "--output-dir", str(out), *TINY, *extra],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, **kw)

def test_invalid_config_fails_before_training(tmp_path):
    r = _train(tmp_path / "x", "--set", "stages.1.rewards.format=-1")
    assert r.returncode == 2 and "stages.1.rewards.format=-1" in r.stderr, r.stderr
    assert not (tmp_path / "x").exists(), "nothing may be written for an invalid config"

ACCELERATE = ROOT / "vrft_aug" / "configs" / "accelerate"
KINDS = {"single_gpu": "NO", "ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "multi_node_zero3": "DEEPSPEED"}

def test_every_accelerate_config_is_checked():
    assert sorted(p.stem for p in ACCELERATE.glob("*.yaml")) == sorted(KINDS)

@pytest.mark.parametrize("name", sorted(KINDS))
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file
    cfg = load_config_from_file(str(ACCELERATE / f"{name}.yaml"))
    assert cfg.mixed_precision == "bf16"
    assert str(cfg.distributed_type).endswith(KINDS[name]), cfg.distributed_type
    if "zero" in name: assert cfg.deepspeed_config["zero_stage"] == int(name[-1])

def test_multi_node_launch_resolves_per_node():
    "What accelerate launch makes of the multi-node config on node 1: 8 GPU processes of 16, rendezvous at the main node."
    from accelerate.commands.launch import launch_command_parser, _validate_launch_command
    from accelerate.utils.launch import prepare_deepspeed_cmd_env
    args = launch_command_parser().parse_args(["--config_file", str(ACCELERATE / "multi_node_zero3.yaml"),
                                               "--machine_rank", "1", "--main_process_ip", "10.0.0.1", "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)   # as launch_command sets it
    _, env = prepare_deepspeed_cmd_env(args)
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "8", 1)
    assert args.rdzv_endpoint == "10.0.0.1:29500" and args.deepspeed_multinode_launcher == "standard"
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"


def test_report_leaves_the_callers_matplotlib_backend_alone(tmp_path):
    "report() draws on matplotlib Figure objects: a caller's backend (here svg) is the same after it, and the PNGs exist."
    import json
    run = tmp_path / "runs" / "vrft" / "synthmed-cells" / "seed0"
    stage = run / "stages" / "01-grpo"; stage.mkdir(parents=True)
    (stage / "done.json").write_text(json.dumps({"steps": 2, "log_history": [{"step": i + 1, "reward": v, "rewards/accuracy_reward/mean": v}
                                                                for i, v in enumerate((0.2, 0.5))]}))
    (run / "metrics.json").write_text(json.dumps(dict(status="complete", run="vrft/synthmed-cells/seed0", preset="vrft",
        dataset="synthmed-cells", seed=0, stages=[str(stage)], metrics=dict(accuracy=0.5, well_formed=1.0,
        confusion_matrix=[[1, 0, 0], [0, 1, 0]]))))
    code = ("import matplotlib; matplotlib.use('svg'); from vrft_aug.pipeline import report; "
            f"out = report({str(tmp_path / 'runs')!r}); print(matplotlib.get_backend()); "
            "print(sorted(p.name for p in out.glob('*.png')))")
    env = {k: v for k, v in _env().items() if k != "MPLBACKEND"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    backend, pngs = r.stdout.strip().splitlines()[-2:]
    assert backend == "svg", f"report() switched the caller's backend to {backend}"
    assert "confusion_vrft_synthmed-cells_seed0.png" in pngs and "rewards_vrft_synthmed-cells_seed0.png" in pngs, pngs
    assert "rewards_synthmed-cells.png" in pngs, pngs   # the per-dataset reward curve (mean over seeds, one line per preset)

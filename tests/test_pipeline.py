"""Reliability of the pipeline: kill-and-resume gives the uninterrupted result; same seed, same metrics."""
import json, os, signal, subprocess, sys, time
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

def _metrics(out):
    return json.loads(next(Path(out).rglob("metrics.json")).read_text())

@pytest.mark.slow
def test_determinism_and_kill_resume(tmp_path):
    # two uninterrupted runs with the same seed give identical metrics and completions
    ref, twin = _train(tmp_path / "ref"), _train(tmp_path / "twin")
    assert ref.returncode == 0 and twin.returncode == 0, (ref.stderr[-3000:], twin.stderr[-3000:])
    a = _metrics(tmp_path / "ref")
    assert a["metrics"] == _metrics(tmp_path / "twin")["metrics"] and a["examples"] == _metrics(tmp_path / "twin")["examples"]
    # a run SIGKILLed mid-GRPO and restarted with --resume ends with the same metrics
    out = tmp_path / "killed"
    p = subprocess.Popen(CLI + ["train", "--preset", "vrft", "--output-dir", str(out), *TINY], env=_env(), cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    # wait until the GRPO stage (stage 1) has a complete checkpoint, then SIGKILL the whole process group
    deadline, killed_at = time.time() + 300, None
    while time.time() < deadline and p.poll() is None:
        ckpts = [c for c in out.glob("_stages/1-grpo-*/checkpoint-*") if (c / "trainer_state.json").exists()]
        if ckpts:
            os.killpg(p.pid, signal.SIGKILL); killed_at = sorted(c.name for c in ckpts); break
        time.sleep(0.05)
    p.wait()
    assert killed_at, f"the run ended (rc={p.returncode}) before a GRPO checkpoint appeared: {p.stderr.read()[-2000:]}"
    assert not list(out.rglob("metrics.json")), "a killed run must not leave final metrics"
    again = _train(out)  # without --resume (or --overwrite) an existing run folder is refused
    assert again.returncode == 2 and "--resume" in again.stderr, again.stderr[-2000:]
    res = _train(out, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    done = json.loads(next(out.glob("_stages/1-grpo-*/done.json")).read_text())
    assert done["resumed_from"] and "checkpoint-" in done["resumed_from"], done["resumed_from"]
    b = _metrics(out)
    assert a["metrics"] == b["metrics"], (a["metrics"], b["metrics"])
    assert a["examples"] == b["examples"]

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

import importlib.util

def test_torchvision_absent_from_cpu_env():
    # The only torchvision wheels reachable on the CPU dev/CI machines are CUDA builds that fail to import next to
    # torch 2.13.0+cpu, and merely having one installed makes transformers think it is available, which breaks
    # `from trl import GRPOTrainer`. The Makefile must never install it (nor anything depending on it, e.g. medmnist).
    assert importlib.util.find_spec("torchvision") is None, \
        "torchvision is installed in the CPU test env; uninstall it (see README: CPU development path)"

def test_grpo_trainer_imports():
    from trl import GRPOTrainer  # noqa: F401  (fails when a broken torchvision is present)

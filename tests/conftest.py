import os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Offline by construction: nothing in the tests may reach a model or dataset hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))


import warnings
import pytest

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A random tiny Qwen2.5-VL folder, its processor and a 4-sample toy TRL dataset (tests/scripts/vrft_toy.py)."
    import torch
    sys.path.insert(0, str(ROOT / "tests" / "scripts"))
    from vrft_toy import toy_dataset
    from vrft_aug.tiny import build_tiny_vlm, load_tiny_vlm
    warnings.filterwarnings("ignore")
    n = torch.get_num_threads(); torch.set_num_threads(1)
    d = build_tiny_vlm(tmp_path_factory.mktemp("tiny") / "m", seed=0, size="test")
    yield d, load_tiny_vlm(d)[1], toy_dataset(4)
    torch.set_num_threads(n)

# No per-example time limit in property tests: the CI machine has 2 shared cores, and speed is benchmarked in bench/.
from hypothesis import settings as _hyp_settings
_hyp_settings.register_profile("vrft", deadline=None)
_hyp_settings.load_profile("vrft")

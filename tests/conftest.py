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

"""Notebooks are committed nbdev-clean (no execution counts or noisy metadata)."""
import json, sys, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb")) + sorted((ROOT / "tutorials").glob("*.ipynb"))

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[f"{p.parent.name}/{p.name}" for p in NOTEBOOKS])
def test_notebook_is_clean(nb, tmp_path):
    copy = tmp_path / nb.name
    copy.write_bytes(nb.read_bytes())
    exe = Path(sys.executable).with_name("nbdev-clean")
    r = subprocess.run([str(exe), "--fname", str(copy)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(copy.read_text()) == json.loads(nb.read_text()), \
        f"{nb.relative_to(ROOT)} is not clean: run `nbdev-clean` and commit the result"

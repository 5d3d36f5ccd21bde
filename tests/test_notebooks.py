"""One test per notebook in nbs/ and tutorials/, run through nbdev's own runner.

Cells flagged `#| slow` run too (make test is the place the slow cells guard real behaviour); `#| gpu` cells are
skipped unless a GPU is present. Set VRFT_SKIP_SLOW=1 for a quick local loop."""
import os
from pathlib import Path
import pytest, torch
from nbdev.test import test_nb as run_notebook

ROOT = Path(__file__).resolve().parents[1]
# nbs/index.ipynb (the course's first page: the loop drawn once, the reading order) runs first, then the numbered ones
NOTEBOOKS = ([ROOT / "nbs" / "index.ipynb"] + sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
             + sorted((ROOT / "tutorials").glob("[0-9]*.ipynb")))

def _skip_flags():
    flags = []
    if not torch.cuda.is_available(): flags.append("gpu")
    if os.environ.get("VRFT_SKIP_SLOW"): flags.append("slow")
    return flags

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[f"{p.parent.name}/{p.name}" for p in NOTEBOOKS])
def test_notebook_runs(nb):
    ok, secs = run_notebook(nb, skip_flags=_skip_flags(), basepath=ROOT, do_print=False)
    assert ok, f"{nb.relative_to(ROOT)} failed (see the traceback above); it ran {secs:.1f}s"

def test_there_are_notebooks():
    assert any(p.parent.name == "nbs" for p in NOTEBOOKS)
    assert any(p.parent.name == "tutorials" for p in NOTEBOOKS)

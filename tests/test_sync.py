"""The committed library must be exactly what the notebooks export (no hand edits, no stale modules)."""
import filecmp, os, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _py_files(d: Path):
    return {p.relative_to(d).as_posix() for p in d.rglob("*.py") if "__pycache__" not in p.parts}

def test_library_matches_notebooks(tmp_path):
    scratch = tmp_path / "proj"
    scratch.mkdir()
    for name in ["pyproject.toml", "README.md"]:
        if (ROOT / name).exists(): shutil.copy(ROOT / name, scratch / name)
    shutil.copytree(ROOT / "nbs", scratch / "nbs")
    # start from the non-generated package files only: __init__.py (version) and package data
    lib = scratch / "vrft_aug"
    shutil.copytree(ROOT / "vrft_aug", lib, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.copy(ROOT / "vrft_aug" / "__init__.py", lib / "__init__.py")
    env = {k: v for k, v in os.environ.items() if k != "IN_TEST"}  # IN_TEST makes nbdev-export a silent no-op
    exe = Path(sys.executable).with_name("nbdev-export")
    r = subprocess.run([str(exe)], cwd=scratch, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want, have = _py_files(lib), _py_files(ROOT / "vrft_aug")
    assert have - want == set(), f"modules in vrft_aug/ that no notebook exports (stale): {sorted(have - want)}"
    assert want - have == set(), f"modules the notebooks export but vrft_aug/ lacks (run nbdev-export): {sorted(want - have)}"
    differ = [f for f in sorted(want) if not filecmp.cmp(lib / f, ROOT / "vrft_aug" / f, shallow=False)]
    assert not differ, f"vrft_aug/ differs from the notebooks in {differ}: edit the notebook, then run nbdev-export"

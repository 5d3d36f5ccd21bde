"""The library as a GPU-server user installs it: the wheel, in a fresh virtual environment without the dev extra, used
from a folder outside the checkout.

The wheel is built from the tracked files only (a copy of `git ls-files`, as a fresh clone has them). The fresh venv
gets CPU torch first from requirements-cpu.txt and then the wheel under constraints-dev.txt, as the Makefile does, but
no `[dev]` extra: whatever the CLI imports must come with the runtime dependencies. Nothing is downloaded but packages:
the model is the tiny base inside the wheel. Sizes and times go to test-artifacts/wheel.json and the log."""
import json, os, shutil, subprocess, sys, time, zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
# a few steps of the vrft preset (SFT warm start, then GRPO) on a handful of SynthMed images, then evaluation
TINY_RUN = ["--n-train", "16", "--n-test", "8", "--eval-batch-size", "8", "--eval-max-new-tokens", "16",
            "--set", "stage_defaults.sft.steps=2", "--set", "stage_defaults.sft.batch_size=4",
            "--set", "stage_defaults.grpo.steps=2", "--set", "stage_defaults.grpo.batch_size=8",
            "--set", "stage_defaults.grpo.num_generations=4", "--set", "stage_defaults.grpo.max_completion_length=16"]


def _run(cmd, timeout, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


def _tracked_copy(dst: Path) -> Path:
    "The files `git ls-files` lists, copied to dst: what a fresh clone builds from."
    files = _run(["git", "ls-files", "-z"], 60, cwd=ROOT).stdout.split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    return dst


@pytest.fixture(scope="module")
def installed(tmp_path_factory, pytestconfig):
    "(wheel path, fresh venv bin folder, environment for a user outside the checkout, a working folder there, timings)"
    tmp = tmp_path_factory.mktemp("wheel")
    t0 = time.monotonic()
    src = _tracked_copy(tmp / "src")
    # --no-isolation: the dev venv's setuptools builds it (no build env to fetch); the copy keeps the checkout clean
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"), str(src)], 300)
    wheel = next((tmp / "dist").glob("vrft_aug-*.whl"))
    t_build = time.monotonic() - t0

    venv = tmp / "venv"
    t0 = time.monotonic()
    _run([sys.executable, "-m", "venv", str(venv)], 120)
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run(pip + ["-r", str(ROOT / "requirements-cpu.txt")], 900)
    _run(pip + ["-c", str(ROOT / "constraints-dev.txt"), str(wheel)], 900)
    t_install = time.monotonic() - t0

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "IN_TEST", "VRFT_CONFIGS")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    work = tmp / "elsewhere"; work.mkdir()
    info = dict(wheel=wheel.name, wheel_bytes=wheel.stat().st_size, build_s=round(t_build, 1),
                fresh_venv_install_s=round(t_install, 1))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "wheel.json").write_text(json.dumps(info, indent=1))
    with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():   # shown in CI's log
        print(f"\nwheel {wheel.name}: {info['wheel_bytes'] / 2**20:.1f} MiB, built in {t_build:.0f}s; "
              f"fresh venv (CPU torch + wheel, no dev extra) installed in {t_install:.0f}s")
    yield dict(wheel=wheel, bin=venv / "bin", env=env, work=work)


def _cli(inst, *args, timeout=300):
    return _run([str(inst["bin"] / "vrft-aug"), *args], timeout, cwd=inst["work"], env=inst["env"])


def test_wheel_carries_the_package_data(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    tracked = _run(["git", "ls-files", "vrft_aug"], 60, cwd=ROOT).stdout.split()
    missing = [f for f in tracked if f not in names]
    assert not missing, f"tracked package files missing from the wheel: {missing}"
    for must in ("vrft_aug/assets/tiny_base/model.safetensors", "vrft_aug/configs/cpu.yaml",
                 "vrft_aug/configs/presets/vrft.yaml", "vrft_aug/configs/accelerate/multi_node_zero3.yaml",
                 "vrft_aug/knowledge/synthmed_cells.yaml"):
        assert must in names, must
    assert not [n for n in names if n.startswith(("nbs/", "tests/", "tutorials/", "bench/"))]


def test_fresh_venv_is_consistent_without_dev_extra(installed):
    py = str(installed["bin"] / "python")
    _run([py, "-m", "pip", "check"], 120, cwd=installed["work"], env=installed["env"])
    r = _run([py, "-c", "import importlib.util as u, vrft_aug; print(vrft_aug.__file__); "
              "print([m for m in ('torchvision', 'nbdev', 'pytest', 'playwright') if u.find_spec(m)])"],
             120, cwd=installed["work"], env=installed["env"])
    where, dev_only = r.stdout.splitlines()
    assert Path(where).is_relative_to(installed["bin"].parent), f"vrft_aug imported from {where}, not the fresh venv"
    assert dev_only == "[]", f"installed without the dev extra, yet present: {dev_only}"


def test_cli_outside_the_checkout(installed):
    assert "train" in _cli(installed, "--help").stdout
    presets = _cli(installed, "grid", "--list").stdout.split()
    shipped = sorted(p.stem for p in (ROOT / "vrft_aug" / "configs" / "presets").glob("*.yaml"))
    assert presets == shipped, (presets, shipped)
    dry = _cli(installed, "train", "--preset", "vrft", "--dry-run").stdout
    assert "preset: vrft" in dry and "model: tiny-base" in dry and "kind: grpo" in dry, dry
    zero3 = Path(_cli(installed, "configs", "accelerate/zero3.yaml").stdout.strip())
    assert zero3.is_file() and zero3.is_relative_to(installed["bin"].parent), zero3
    # a folder of one's own overrides a shipped file
    mine = installed["work"] / "my-configs"
    _cli(installed, "configs", "--copy", str(mine))
    (mine / "presets" / "vrft.yaml").write_text((mine / "presets" / "vrft.yaml").read_text() + "seed: 11\n")
    assert "seed: 11" in _cli(installed, "train", "--preset", "vrft", "--configs", str(mine), "--dry-run").stdout
    # a model folder that is not there is named, not looked up on the hub
    r = subprocess.run([str(installed["bin"] / "vrft-aug"), "eval", "--model", "/nonexistent"], capture_output=True,
                       text=True, timeout=300, cwd=installed["work"], env=installed["env"])
    assert r.returncode == 2 and "the folder /nonexistent does not exist" in r.stderr, r.stderr[-3000:]


def test_tiny_run_and_eval_outside_the_checkout(installed):
    out = installed["work"] / "runs"
    r = _cli(installed, "train", "--preset", "vrft", "--output-dir", str(out), *TINY_RUN, timeout=900)
    m = json.loads((out / "vrft" / "synthmed-cells" / "seed0" / "metrics.json").read_text())
    assert m["status"] == "complete" and m["model"] == "tiny-base", m
    assert 0.0 <= m["metrics"]["accuracy"] <= 1.0 and m["metrics"]["n"] == 8, m["metrics"]
    assert len(m["stages"]) == 2 and Path(m["final_model"]).is_dir(), m
    # the trained checkpoint evaluates on its own with `vrft-aug eval`, writing metrics
    ev = installed["work"] / "eval.json"
    _cli(installed, "eval", "--model", m["final_model"], "--n-test", "8", "--eval-batch-size", "8",
         "--eval-max-new-tokens", "16", "--out", str(ev))
    e = json.loads(ev.read_text())
    assert e["metrics"]["n"] == 8 and "accuracy" in e["metrics"], e["metrics"]

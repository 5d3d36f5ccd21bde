"""End to end in a real browser: JupyterLab on localhost, tutorial 1 opened in headless Chromium, the reward-shaping
explorer run, its delta slider dragged, the displayed advantages checked, a screenshot saved to test-artifacts/.

Needs Debian's Chromium (`apt-get update && apt-get install -y chromium`) and the `playwright` Python package (in the dev
extra). The browser is never downloaded: Playwright drives /usr/bin/chromium (override with $VRFT_CHROMIUM). When the
browser cannot start, the test fails (it is not skipped) with the command that installs it."""
import json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent / "browser"))
from jupyter_page import displayed_advantages, favoured_label, drag_slider_to_start, chromium, run_all_cells, \
    wait_idle  # noqa: E402

NOTEBOOK = ROOT / "tutorials" / "01_rewards.ipynb"
ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc, timeout: float):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None: raise RuntimeError(f"JupyterLab exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer {url.split('?')[0]} within {timeout:.0f}s")


@pytest.fixture
def jupyterlab():
    "A JupyterLab server on 127.0.0.1 (random port, a token, temp config/runtime/settings) serving a copy of tutorial 1."
    tmp = Path(tempfile.mkdtemp(prefix="vrft_lab_"))
    work = tmp / "work"; work.mkdir()
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    # a kernelspec, so JupyterLab starts the kernel instead of asking which one (the copy; the tutorial is untouched)
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    (work / NOTEBOOK.name).write_text(json.dumps(nb), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # inline plots in the kernel
    env.update(JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), IPYTHONDIR=str(tmp / "ipython"),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    port, token = _free_port(), "vrft-" + os.urandom(8).hex()
    log = open(tmp / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--allow-root", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, timeout=60)
        yield dict(url=f"http://127.0.0.1:{port}", token=token, notebook=NOTEBOOK.name, log=tmp / "jupyterlab.log")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)   # the server and the kernels it started (its own process group)
            try: proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL); proc.wait(timeout=5)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_explorer_in_jupyterlab(jupyterlab, capsys):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser_reward_explorer.png"
    t0 = time.monotonic()
    with chromium() as browser:
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{jupyterlab['url']}/lab/tree/{jupyterlab['notebook']}?token={jupyterlab['token']}")
            run_all_cells(page, timeout_s=60)
            explorer = page.locator(".vrft-explorer").first
            explorer.wait_for(state="visible", timeout=60_000)
            page.wait_for_function("document.querySelectorAll('.vrft-explorer .vrft-adv').length >= 6", timeout=30_000)
            before, fav_before = displayed_advantages(page), favoured_label(page)
            assert fav_before == "recites", f"with delta = +0.5 the explorer should favour 'recites', shows {fav_before!r}"

            drag_slider_to_start(page, ".vrft-explorer .vrft-delta")   # delta: +0.5 -> -1
            page.wait_for_function(
                "(b) => { const v = [...document.querySelectorAll('.vrft-explorer .vrft-adv')].map(e => e.dataset.adv);"
                " return v.length === b.length && v.some((x, i) => x !== b[i]); }",
                arg=[f"{x:.6f}" for x in before], timeout=30_000)
            after, fav_after = displayed_advantages(page), favoured_label(page)
            wait_idle(page, timeout_s=30)                       # the plot has been redrawn too
            page.locator(".vrft-explorer .vrft-delta").first.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(shot), full_page=False)
            with capsys.disabled(): print(f"\nbrowser test screenshot: {shot}")   # shown even when output is captured
        except Exception:
            fail_shot = ARTIFACTS / "browser_failure.png"
            try: page.screenshot(path=str(fail_shot)); print(f"\nfailure screenshot: {fail_shot}")
            except Exception: pass
            print("JupyterLab log (tail):\n" + jupyterlab["log"].read_text()[-3000:])
            raise
    assert after != before
    assert fav_after == "brief", f"with delta < 0 the explorer should favour 'brief', shows {fav_after!r}"
    assert after[1] < after[0], f"recitation should now rank below the brief answer: advantages {after}"
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert time.monotonic() - t0 < 120, "the browser test took over 2 minutes"

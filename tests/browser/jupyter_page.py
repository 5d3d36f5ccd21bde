"""Playwright helpers for driving JupyterLab 4, the vrft_aug widgets and the docs site in Debian's headless Chromium."""
import contextlib, os, re, time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "apt-get update && apt-get install -y chromium"
# Headless, as root, on a machine without network: no sandbox, no GPU, no background connections to Google.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch_chromium(pw):
    "Debian's Chromium under Playwright; a test fails (never skips) with the install command when it cannot start."
    exe = os.environ.get("VRFT_CHROMIUM", CHROMIUM)
    if not Path(exe).is_file():
        pytest.fail(f"Chromium not found at {exe}. Install Debian's package: `{INSTALL_HINT}` "
                    "(or set VRFT_CHROMIUM to a Chromium binary); the browser test does not download browsers.")
    try:
        return pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
    except Exception as e:
        pytest.fail(f"Chromium at {exe} could not start ({type(e).__name__}: {str(e).splitlines()[0]}). "
                    f"Reinstall it with `{INSTALL_HINT}`.")


@contextlib.contextmanager
def chromium():
    "A started Chromium browser (closed afterwards); fails with the install command when Playwright or Chromium is missing."
    try: from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the `playwright` Python package is missing: install the dev extra (`pip install -e '.[dev]'`)")
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try: yield browser
        finally: browser.close()


def run_all_cells(page, timeout_s: float = 60):
    "Wait for the notebook and an idle kernel (accepting the kernel dialog if one opens), then Run > Run All Cells."
    page.locator(".jp-NotebookPanel").first.wait_for(state="visible", timeout=timeout_s * 1000)
    idle = page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle"))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count(): dialog.first.click()            # "Select Kernel": take the preselected Python 3
        if idle.count() and not page.locator(".jp-Dialog").count(): break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the notebook's kernel was not idle within {timeout_s:.0f}s")
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.get_by_text("Run All Cells", exact=True).first.click()
    news = page.locator(".jp-Notification-Toast-Close, .Toastify__close-button")
    if news.count(): news.first.click()                    # the "Jupyter news?" toast, out of the screenshot
    # every code cell has run when each input prompt shows an execution count ("[3]:"), none "[*]:" or "[ ]:"
    page.wait_for_function(
        "() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent);"
        " return p.length > 0 && p.every(t => /\\[\\d+\\]/.test(t)); }", timeout=timeout_s * 1000)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Error")
    if errors.count(): raise AssertionError("a cell raised in JupyterLab: " + errors.first.inner_text()[-1500:])


def wait_idle(page, timeout_s: float = 30):
    "Wait until the status bar shows the kernel idle."
    page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle")).first.wait_for(timeout=timeout_s * 1000)


def displayed_advantages(page) -> list[float]:
    "The advantages the explorer's table shows, read from the cells' data-adv attributes."
    return page.eval_on_selector_all(".vrft-explorer .vrft-adv", "els => els.map(e => parseFloat(e.dataset.adv))")


def favoured_label(page) -> str:
    "The completion the explorer says the update favours."
    return page.locator(".vrft-explorer .vrft-favoured b").first.inner_text().strip()


def drag_slider_to_start(page, selector: str):
    "Drag an ipywidgets 8 (noUiSlider) slider's handle past the left end of its track with the mouse."
    handle = page.locator(f"{selector} .noUi-handle").first
    track = page.locator(f"{selector} .noUi-base").first
    handle.scroll_into_view_if_needed()
    h, t = handle.bounding_box(), track.bounding_box()
    if h is None or t is None: raise AssertionError(f"slider {selector!r} is not rendered")
    y = h["y"] + h["height"] / 2
    page.mouse.move(h["x"] + h["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(t["x"] - 30, y, steps=12)
    page.mouse.up()
    time.sleep(0.2)

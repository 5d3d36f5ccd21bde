"""The documentation site: `docs/build_site.py` (what `make docs` runs) builds it offline from the notebooks, every lesson,
tutorial and module has its page, the links nbdev writes into the library (module docstrings' `Docs:`, `_modidx.py`'s
symbol anchors) land on pages the site has, and in headless Chromium the landing page and an API page show what they
should (a known function's signature and docstring, its maths rendered), with no request leaving the local server.
A screenshot of the API page goes to test-artifacts/docs_api_page.png; sizes and times to test-artifacts/docs.json."""
import functools, http.server, importlib, json, os, pkgutil, re, subprocess, sys, threading, time, tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
sys.path.insert(0, str(Path(__file__).parent / "browser"))
from jupyter_page import chromium  # noqa: E402

sys.path.insert(0, str(ROOT / "docs"))
import build_site  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory, pytestconfig):
    "The site, built as `make docs` builds it but into a temporary folder, with an empty execution cache."
    tmp = tmp_path_factory.mktemp("docs")
    env = {k: v for k, v in os.environ.items() if k != "IN_TEST"}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "build_site.py"), "--out", str(tmp / "site"),
                        "--cache", str(tmp / "cache"), "--work", str(tmp / "work")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    secs = time.monotonic() - t0
    assert r.returncode == 0, f"docs build failed:\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
    out = tmp / "site"
    info = dict(build_s=round(secs, 1), files=sum(1 for p in out.rglob("*") if p.is_file()),
                bytes=sum(p.stat().st_size for p in out.rglob("*") if p.is_file()))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "docs.json").write_text(json.dumps(info, indent=1))
    with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\ndocs site built in {secs:.0f}s: {info['files']} files, {info['bytes'] / 2**20:.1f} MiB")
    return out


def _modules() -> list[str]:
    import vrft_aug
    return sorted(f"vrft_aug.{m.name}" for m in pkgutil.iter_modules(vrft_aug.__path__) if not m.name.startswith("_"))


def test_every_notebook_and_module_has_a_page(site):
    lessons, tutorials = build_site.notebooks()
    for nb in lessons: assert (site / f"{build_site.page_name(nb)}.html").is_file(), nb.name
    for nb in tutorials: assert (site / "tutorials" / f"{build_site.page_name(nb)}.html").is_file(), nb.name
    for m in _modules(): assert (site / "api" / f"{m}.html").is_file(), m
    # a lesson carries its executed outputs: the tour of the reward functions prints and plots
    rewards = (site / "rewards.html").read_text(encoding="utf-8")
    assert 'class="cell_output' in rewards and "<img" in rewards and "<math" in rewards


def test_docstring_links_land_on_pages_of_the_site(site):
    "Every module docstring ends `Docs: <Documentation URL>/<page>.html.md`; the site has that file and its HTML page."
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Documentation"].rstrip("/")
    for m in _modules():
        doc = importlib.import_module(m).__doc__ or ""
        found = re.search(r"^Docs: (\S+)$", doc, re.M)
        assert found, f"{m}: no `Docs:` line in its docstring"
        url = found.group(1)
        assert url.startswith(base + "/"), f"{m}: {url} is not under the Documentation URL {base}"
        rel = url[len(base) + 1:]
        md, html = site / rel, site / rel.removesuffix(".md")
        assert md.is_file() and html.is_file(), f"{m}: the docstring links {rel}, which the site lacks"
        title = doc.splitlines()[0][:40]
        assert title in md.read_text(encoding="utf-8"), f"{rel} is not {m}'s page"


def test_modidx_anchors_exist(site):
    "nbdev's `_modidx.py` links every exported symbol as `<page>.html#<anchor>`: each anchor is on its page."
    from vrft_aug._modidx import d
    pages: dict[str, str] = {}
    missing = []
    for mod, syms in d["syms"].items():
        for sym, (link, _) in syms.items():
            page, anchor = link.split("#", 1)
            if page not in pages: pages[page] = (site / page).read_text(encoding="utf-8")
            if f'id="{anchor}"' not in pages[page]: missing.append(link)
    assert not missing, f"{len(missing)} symbol links without an anchor, e.g. {missing[:5]}"


@pytest.fixture
def served(site):
    "The site on a local HTTP server (as a reader's browser would fetch it), a random port on 127.0.0.1."
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try: yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally: httpd.shutdown(); httpd.server_close()


def test_site_in_the_browser(served, capsys):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "docs_api_page.png"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        elsewhere = []
        page.on("request", lambda r: None if r.url.startswith(served) else elsewhere.append(r.url))
        page.goto(f"{served}/index.html")
        assert "vrft_aug" in page.title()
        nav = page.locator("a", has_text="grpo: the GRPO update, from scratch").first
        nav.wait_for(state="visible", timeout=10_000)
        page.locator("a", has_text="vrft_aug.grpo").first.click()    # landing page -> API page, as a reader goes
        page.wait_for_url(re.compile(r"/api/vrft_aug\.grpo\.html"), timeout=10_000)
        sig = page.locator('dt[id="vrft_aug.grpo.group_advantages"]')
        sig.wait_for(state="visible", timeout=10_000)
        text = " ".join(sig.inner_text().split())
        for part in ("group_advantages(", "rewards,", "num_generations: int", "scale_rewards: str = 'group'",
                     "eps: float = 1e-4", "Tensor"):
            assert part in text, f"signature shows {text!r}, lacking {part!r}"
        body = sig.locator("xpath=following-sibling::dd[1]")
        assert "sum_then_normalize" in body.inner_text() and "advantage" in body.inner_text(), body.inner_text()
        assert body.locator("math").count() >= 1, "the docstring's $A_i = ...$ is not rendered as maths"
        sig.scroll_into_view_if_needed()
        page.screenshot(path=str(shot))
        with capsys.disabled(): print(f"\ndocs API page screenshot: {shot}")
        assert not elsewhere, f"the pages requested something off the local site: {elsewhere[:5]}"


def test_the_course_order_lists_every_lesson_once():
    "The reading table of nbs/index.ipynb orders the docs' sidebar: every numbered notebook is in it, once."
    listed = build_site.course_order()
    assert len(listed) == len(set(listed)), listed
    assert sorted(listed) == sorted(p.stem for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))

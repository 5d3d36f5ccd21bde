"""Build the documentation site: every notebook of nbs/ and tutorials/ executed and rendered, an API page per module,
README.md as the landing page. `make docs` runs `python docs/build_site.py` and writes the site to _docs/.

Why not `nbdev-docs`: nbdev renders with Quarto, whose installer downloads a binary; these machines reach only package
registries, and the index's `quarto-cli` is a 4 KB sdist that fetches the binary at install time. Sphinx, MyST-NB and
autodoc all install from the index (the dev extra).

The steps, in order:
1. `execute`: run each notebook with nbdev's own runner (execnb, as `make test` does), in the notebook's folder.
   `#| slow` and `#| gpu` cells are skipped unless `--slow`, to keep the build near a minute; results are cached in
   _proc/docs_exec/, keyed by the notebook, the library's files and the flags.
2. `stage`: write it under the name nbdev gives its page (`10_pipeline.ipynb` -> `pipeline.html`), without `#| hide`
   cells and directive lines, with an anchor for every symbol nbdev's `_modidx.py` links to
   (`pipeline.html#resolve_config`), plus `pipeline.html.md`, the Markdown copy each module docstring's `Docs:` names.
3. `api_page` per module (autodoc) and `landing_page` (README.md and the contents).
4. sphinx-build with warnings as errors."""
import argparse, hashlib, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "*An interactive widget: it needs a running kernel, so open the notebook in JupyterLab to use it.*"
SKIP_NOTE = ("*Not run for this page (`#| {flag}`): `make test` runs it; `python docs/build_site.py --slow` puts its "
             "output here.*")


def course_order() -> list[str]:
    "The lessons' stems in the order of the reading table of nbs/index.ipynb (`| `05_grpo` | ... |` rows): the course's one home."
    cells = json.loads((ROOT / "nbs" / "index.ipynb").read_text(encoding="utf-8"))["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return re.findall(r"^\| `(\d\w*)` \|", text, flags=re.M)


def notebooks() -> tuple[list[Path], list[Path]]:
    """The lessons (nbs/index.ipynb first, then the numbered ones in the index's course order, any it does not list after
    them by number) and the tutorials, in their numbered order."""
    numbered = sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
    rank = {stem: k for k, stem in enumerate(course_order())}
    return ([ROOT / "nbs" / "index.ipynb"] + sorted(numbered, key=lambda p: (rank.get(p.stem, len(rank)), p.name)),
            sorted((ROOT / "tutorials").glob("[0-9]*.ipynb")))


def page_name(nb: Path) -> str:
    """The page nbdev gives a notebook: `10_pipeline.ipynb` -> `pipeline` (nbdev's own rule, so docstring links match).
    `nbs/index.ipynb` becomes `overview`: the site's `index` is the landing page built from README.md."""
    from nbdev.config import nbpath2html
    stem = nbpath2html(nb).stem
    return "overview" if nb.parent.name == "nbs" and stem == "index" else stem


def _directives(src: str) -> dict:
    "`#| name args` lines at the top of a cell -> {name: args}."
    out = {}
    for line in src.splitlines():
        m = re.match(r"\s*#\|\s*([\w-]+)(.*)", line)
        if not m: break
        out[m.group(1)] = m.group(2).strip()
    return out


def _library_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((ROOT / "vrft_aug").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts: h.update(p.relative_to(ROOT).as_posix().encode()); h.update(p.read_bytes())
    return h.hexdigest()


def execute(nb: Path, skip: list[str], cache: Path, lib: str) -> dict:
    "The notebook with outputs, run by nbdev's runner in its own folder; `skip` flags leave cells out. Cached."
    key = hashlib.sha256(nb.read_bytes() + lib.encode() + ",".join(sorted(skip)).encode()).hexdigest()[:20]
    hit = cache / f"{nb.parent.name}-{nb.stem}-{key}.ipynb"
    if hit.exists(): return json.loads(hit.read_text(encoding="utf-8"))
    from fastcore.nbio import nb2dict
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.process import NBProcessor
    from nbdev.test import _skip_cell        # the predicate nbdev-test (and tests/test_notebooks.py) skip cells by
    proc = NBProcessor(nb, rm_directives=False, process=True).nb
    shell, prev = CaptureShell(nb), os.environ.get("IN_TEST")
    os.environ["IN_TEST"] = "1"              # as nbdev's runner: nbdev-export in a notebook is then a no-op
    t0 = time.monotonic()
    try:
        with working_directory(nb.parent): shell.run_all(proc, exc_stop=True, preproc=_skip_cell(proc, skip))
    except Exception:
        sys.stderr.write(shell.prettytb(fname=nb) or "")
        raise SystemExit(f"docs: {nb.relative_to(ROOT)} failed to execute (traceback above)")
    finally:
        if prev is None: os.environ.pop("IN_TEST", None)
        else: os.environ["IN_TEST"] = prev
    print(f"  executed {nb.relative_to(ROOT)} in {time.monotonic() - t0:.1f}s", flush=True)
    d = nb2dict(proc)
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob(f"{nb.parent.name}-{nb.stem}-*.ipynb"): old.unlink()
    hit.write_text(json.dumps(d), encoding="utf-8")
    return d


def _defined(src: str) -> list[str]:
    "Anchor names nbdev gives what a cell defines: `name`, `class.method` (lower case), `@patch`ed `cls.method` too."
    names, cls = [], None
    for line in src.splitlines():
        if m := re.match(r"class\s+(\w+)", line): cls = m.group(1); names.append(cls)
        elif m := re.match(r"(?:async\s+)?def\s+(\w+)\s*\(\s*(?:self|cls)\s*:\s*(\w+)", line): names.append(f"{m.group(2)}.{m.group(1)}")
        elif m := re.match(r"(?:async\s+)?def\s+(\w+)", line): cls = None; names.append(m.group(1))
        elif cls and (m := re.match(r"\s+(?:async\s+)?def\s+(\w+)", line)): names.append(f"{cls}.{m.group(1)}")
        elif line and not line[0].isspace() and not line.startswith(("@", "#", ")")): cls = None
    return [n.lower() for n in names]


def _md(text: str, n: int) -> dict: return {"cell_type": "markdown", "id": f"docs{n:04d}", "metadata": {}, "source": text}


def stage(d: dict, anchors: set[str], page: str) -> dict:
    "The page's notebook: hidden cells out, directive lines out, notes for skipped cells, symbol anchors in."
    cells, placed = [], set()
    for c in d["cells"]:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        dirs = _directives(src) if c["cell_type"] == "code" else {}
        if "hide" in dirs or "default_exp" in dirs: continue
        if c["cell_type"] == "code":
            body = "\n".join(l for l in src.splitlines() if not re.match(r"\s*#\|", l)).strip("\n")
            if "export" in dirs:
                mine = [a for a in _defined(body) if a in anchors and a not in placed]
                if mine:
                    cells.append(_md("".join(f'<a id="{a}"></a>' for a in mine), len(cells))); placed.update(mine)
            outs = [{"output_type": "display_data", "metadata": {}, "data": {"text/markdown": WIDGET_NOTE}}
                    if WIDGET in (o.get("data") or {}) else o for o in c.get("outputs", [])]   # no kernel on a site
            c = {**c, "source": body, "metadata": {}, "outputs": outs}   # (execnb's timings are not nbformat metadata)
            cells.append(c)
            flag = next((f for f in ("slow", "gpu") if f in dirs), None)
            if flag and not c.get("outputs"): cells.append(_md(SKIP_NOTE.format(flag=flag), len(cells)))
        else: cells.append(c)
    missing = anchors - placed
    if missing: raise SystemExit(f"docs: {page}: no exported cell defines {sorted(missing)} (linked from _modidx.py)")
    meta = {**d.get("metadata", {}), "language_info": {"name": "python", "pygments_lexer": "ipython3"},
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}  # nbdev-clean strips them
    return {**d, "metadata": meta, "cells": cells}


def markdown_copy(d: dict) -> str:
    "The page as Markdown (`<page>.html.md`, the address nbdev writes into module docstrings): prose, code, text outputs."
    parts = []
    for c in d["cells"]:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        if c["cell_type"] == "markdown":
            if not src.startswith("<a id="): parts.append(src)
            continue
        parts.append(f"```python\n{src}\n```")
        for o in c.get("outputs", []):
            text = o.get("text") or (o.get("data") or {}).get("text/plain")
            if text: parts.append("```\n" + ("".join(text) if isinstance(text, list) else text).rstrip() + "\n```")
    return "\n\n".join(parts) + "\n"


def api_page(module: str, page: str) -> str:
    return (f"# `{module}`\n\nThe lesson that defines it, with examples and tests: {{doc}}`../{page}`.\n\n"
            f"```{{eval-rst}}\n.. automodule:: {module}\n```\n")


def landing_page(lessons: list[str], tutorials: list[str], modules: list[str]) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    toc = lambda caption, entries: (f"```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n" + "\n".join(entries) + "\n```\n")
    return (readme.rstrip() + "\n\n## This site\n\nEvery lesson notebook of `nbs/` (nearly each one module of the library), every "
            "tutorial, and an API page per module, built from the notebooks by `make docs`.\n\n"
            + toc("Lessons (nbs/)", lessons) + "\n" + toc("Tutorials", [f"tutorials/{t}" for t in tutorials]) + "\n"
            + toc("API reference", [f"api/{m}" for m in modules]))


def _module_of(d: dict) -> str | None:
    for c in d["cells"]:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        if c["cell_type"] == "code" and "default_exp" in (dirs := _directives(src)): return "vrft_aug." + dirs["default_exp"]
    return None


def build(out: Path, slow: bool = False, cache: Path = ROOT / "_proc" / "docs_exec",
          work: Path = ROOT / "_proc" / "docs") -> Path:
    "Stage everything under `work`/src, then sphinx-build it into `out`; returns `out`."
    from vrft_aug._modidx import d as modidx
    t0 = time.monotonic()
    src = work / "src"
    if src.exists(): shutil.rmtree(src)
    (src / "tutorials").mkdir(parents=True); (src / "api").mkdir(); (src / "_extra").mkdir()
    shutil.copy(DOCS / "conf.py", src / "conf.py")
    skip = ["gpu"] + ([] if slow else ["slow"])
    try:
        import torch
        if torch.cuda.is_available(): skip.remove("gpu")
    except ImportError: pass
    lib = _library_digest()
    nbs, tuts = notebooks()
    lessons, modules = [], []
    print(f"docs: executing {len(nbs) + len(tuts)} notebooks (skipping {skip or 'nothing'}; cache {cache})", flush=True)
    for nb in nbs:
        d, page = execute(nb, skip, cache, lib), page_name(nb)
        module = _module_of(d)     # None: a page without a module of its own (e.g. the paper-setup table)
        anchors = {link.split("#", 1)[1] for link, _ in modidx["syms"].get(module, {}).values()} if module else set()
        staged = stage(d, anchors, page)
        (src / f"{page}.ipynb").write_text(json.dumps(staged), encoding="utf-8")
        (src / "_extra" / f"{page}.html.md").write_text(markdown_copy(staged), encoding="utf-8")
        if module:
            (src / "api" / f"{module}.md").write_text(api_page(module, page), encoding="utf-8")
            modules.append(module)
        lessons.append(page)
    tutorials = []
    for nb in tuts:
        d, page = execute(nb, skip, cache, lib), page_name(nb)
        (src / "tutorials" / f"{page}.ipynb").write_text(json.dumps(stage(d, set(), page)), encoding="utf-8")
        tutorials.append(page)
    (src / "index.md").write_text(landing_page(lessons, tutorials, modules), encoding="utf-8")
    t1 = time.monotonic()
    html = work / "html"    # MyST-NB writes output images beside the output folder (../jupyter_execute): keep that in work
    r = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-j", "1",
                        "-d", str(work / "doctrees"), str(src), str(html)], cwd=ROOT)
    if r.returncode: raise SystemExit(f"docs: sphinx-build failed ({r.returncode}); its warnings are above")
    if out.exists(): shutil.rmtree(out)
    shutil.copytree(html, out)
    print(f"docs: site in {out}/ (index.html): notebooks {t1 - t0:.0f}s, sphinx {time.monotonic() - t1:.0f}s", flush=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "_docs"), help="site folder")
    ap.add_argument("--slow", action="store_true", help="also run `#| slow` cells (the build takes minutes, not one)")
    ap.add_argument("--cache", default=str(ROOT / "_proc" / "docs_exec"), help="executed-notebook cache")
    ap.add_argument("--work", default=str(ROOT / "_proc" / "docs"), help="staging folder (Sphinx sources, doctrees)")
    a = ap.parse_args()
    build(Path(a.out), slow=a.slow, cache=Path(a.cache), work=Path(a.work))

"""Sphinx configuration of the documentation site (built by `make docs`, i.e. docs/build_site.py, which stages the executed
notebooks, the API pages and the landing page next to a copy of this file).

The site works offline: the theme's assets are local, maths is turned into MathML at build time (browsers render it
natively, so no MathJax from a CDN), and widget outputs become a note (a static page has no kernel to run them)."""
import re

from docutils import nodes

import vrft_aug

project = "vrft_aug"
author = "vrft_aug developers"
release = version = vrft_aug.__version__
copyright = "vrft_aug developers, Apache-2.0"

extensions = ["myst_nb", "sphinx.ext.autodoc"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["myst.header"]   # lessons start headings at ## under the # title, sometimes deeper

# Notebooks: executed by docs/build_site.py before Sphinx runs (nbdev's runner, in the notebook's own folder)
nb_execution_mode = "off"
nb_ipywidgets_js = {}           # no require.js / widget manager from a CDN (build_site.py replaces widget outputs)
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# API pages: docstrings are written with Markdown's `code` and $maths$; read single backticks as code in reST too
autodoc_default_options = {"members": True, "undoc-members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
default_role = "code"

html_theme = "furo"
html_title = f"vrft_aug {release}"
html_extra_path = ["_extra"]        # the `<page>.html.md` Markdown copies the module docstrings link to
html_static_path = []
html_copy_source = False
html_math_renderer = "mathml"   # registered in setup() below


def _mathml(latex: str, display: bool) -> str:
    "LaTeX -> MathML (rendered by the browser itself); the source as code when the converter cannot read it."
    from latex2mathml.converter import convert
    try: return convert(latex, display="block" if display else "inline")
    except Exception:
        from html import escape
        return f'<code class="math-source">{escape(latex)}</code>'


def _visit_inline(self, node):
    self.body.append(_mathml(node.astext(), display=False))
    raise nodes.SkipNode


def _visit_block(self, node):
    self.body.append(f'<div class="math-block">{_mathml(node.astext(), display=True)}</div>')
    raise nodes.SkipNode


def _markdownish(line: str) -> str:
    "`$x$` becomes :math:`x`; outside code and maths `|` is text, not a reST substitution (|x - y| in a docstring)."
    parts = re.split(r"(`[^`]*`|(?<![\\$])\$[^$\n]+?\$)", line)
    for j, part in enumerate(parts):
        if j % 2 == 0: parts[j] = part.replace("|", "\\|")
        elif part.startswith("$"): parts[j] = ":math:`" + part[1:-1] + "`"
    return "".join(parts)


def _docstring_markdown(app, what, name, obj, options, lines):
    "Docstrings here are written as in the notebooks' Markdown; read them so in reST."
    lines[:] = [_markdownish(l) for l in lines]


def setup(app):
    app.add_html_math_renderer("mathml", (_visit_inline, None), (_visit_block, None))
    app.connect("autodoc-process-docstring", _docstring_markdown)

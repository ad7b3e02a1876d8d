"""Sphinx configuration of the emcee_ipp site (``make docs``).

Notebooks under ``tutorials/`` are executed at every build (myst-nb), so a
tutorial cannot rot; the Performance page's tables and figures are made from
``benchmarks/results/*.json`` at build time (``_ext/benchreport.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import emcee_ipp  # noqa: E402

project = "emcee_ipp"
author = "the emcee_ipp developers"
copyright = "2026, the emcee_ipp developers"
release = emcee_ipp.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_nb",
    "benchreport",
]
exclude_patterns = [
    "_build",
    "jupyter_execute",
    "_generated/*.md",
    "_intersphinx",
    "Thumbs.db",
    ".DS_Store",
]
root_doc = "index"

# -- notebooks: executed at every build, on 2 engines each -------------------
nb_execution_mode = "force"
nb_execution_timeout = 180  # s per cell; each notebook takes well under a minute
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_show_tb = True
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# -- API reference -------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_default_options = {"members": True}
toc_object_entries_show_parents = "hide"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = True
numpydoc_xref_aliases = {
    "IPyParallelPool": "emcee_ipp.IPyParallelPool",
    "SplitResult": "emcee_ipp.SplitResult",
    "EnsembleResult": "emcee_ipp.EnsembleResult",
    "ndarray": "numpy.ndarray",
}
numpydoc_xref_ignore = {"optional", "default", "of", "or", "shape", "callable", "type", "any"}

# -- intersphinx ---------------------------------------------------------------
# Each project's inventory is kept in _intersphinx/ (where each came from:
# _intersphinx/README.md), so the build needs no network; only package
# registries are reachable where it is developed and tested. On Read the Docs,
# or with EMCEE_IPP_DOCS_ONLINE=1, the live inventory is tried first and the
# kept one is the fallback.
_TARGETS = {
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
    "emcee": "https://emcee.readthedocs.io/en/stable/",
    "ipyparallel": "https://ipyparallel.readthedocs.io/en/stable/",
}
_ONLINE = bool(os.environ.get("READTHEDOCS") or os.environ.get("EMCEE_IPP_DOCS_ONLINE"))


def _locations(name: str) -> tuple:
    kept = str(DOCS / "_intersphinx" / f"{name}.inv")
    return (None, kept) if _ONLINE else (kept,)


intersphinx_mapping = {name: (url, _locations(name)) for name, url in _TARGETS.items()}
intersphinx_timeout = 10

# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"emcee_ipp {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 7,
    # The fault table needs the width more than its one-section page needs a TOC.
    "secondary_sidebar_items": {"**": ["page-toc"], "guide/faults": []},
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# Pages without sections get the full width.
html_sidebars = {
    page: [] for page in ("index", "getting-started", "performance", "design", "api", "changelog")
}
html_show_sourcelink = False


def _notebooks(app, env, added, changed, removed):
    """Every notebook is read, so executed, again at every build, even where
    Sphinx would reuse its last build: a tutorial runs against today's code."""
    return [doc for doc in env.found_docs if str(env.doc2path(doc)).endswith(".ipynb")]


def setup(app):
    app.connect("env-get-outdated", _notebooks)

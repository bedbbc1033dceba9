"""Sphinx configuration: ``make docs`` builds docs/ into build/docs/html with warnings as errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sphinx.ext.napoleon import Config as NapoleonConfig
from sphinx.ext.napoleon.docstring import GoogleDocstring

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trio_uring  # noqa: E402

project = "trio-uring"
author = "the trio-uring authors"
copyright = "the trio-uring authors, MIT license"
release = version = trio_uring.__version__

extensions = [
    "myst_parser",  # the Markdown pages, CHANGELOG.md included as it is
    "sphinx.ext.autodoc",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "substitution"]

# The supported trio range, written once (trio_uring/_core/_compat.py), used as {{ trio_range }}.
from trio_uring._core._compat import TESTED_TRIO  # noqa: E402

myst_substitutions = {
    "trio_oldest": "{}.{}".format(*TESTED_TRIO[0]),
    "trio_newest": "{}.{}".format(*TESTED_TRIO[1]),
}
myst_heading_anchors = 3

html_theme = "alabaster"
html_theme_options = {
    "description": "trio-native io_uring networking, with zero-copy receive",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}


# Nitpicky: every cross-reference inside the project must resolve. There is no intersphinx
# (the docs build works offline), so references into trio, the stdlib and other libraries
# are accepted unresolved, and so are private classes named in signatures.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(trio|socket|os|typing|collections|contextlib|enum|attrs|pytest|_pytest|types|cffi)(\..*)?"),
    (r"py:.*", r"trio_uring\.(.*\.)?_.*"),
    # internals named in the low-level docstrings
    (r"py:.*", r"closed|timespec|_withdraw|_request_cancel"),
    # the stdlib's signature lines ("recv_into(buffer, [nbytes]) -> nbytes_read"), inherited by UringSocket
    (r"py:.*", r"count|value|integer|buffer|nbytes_read"),
    (r"py:class", r".* .*"),  # the stdlib's "-> socket object" signatures in inherited docstrings
    # trio's docstrings, inherited by the stream and socket classes, name trio's own classes bare
    (
        r"py:.*",
        r"(HalfCloseableStream|AsyncResource|ReceiveStream|SendStream|Stream|Listener|ReceiveChannel)(\..*)?",
    ),
]


def _google_sections(  # noqa: PLR0917 - the signature of Sphinx's event
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Render the Args:/Returns:/Raises: sections of trio's docstrings, which the stream classes
    inherit. Only for callables and classes: the project's ``#:`` attribute comments are prose."""
    if what in ("function", "method", "class", "exception"):
        lines[:] = GoogleDocstring(lines, _NAPOLEON, what=what, name=name, obj=obj).lines()


_NAPOLEON = NapoleonConfig(napoleon_use_param=True, napoleon_use_rtype=True)


def setup(app: Any) -> None:
    app.connect("autodoc-process-docstring", _google_sections)

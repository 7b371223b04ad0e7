"""Sphinx configuration for the consentmw documentation.

Build (the command CI runs, warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The build needs no network: no intersphinx inventories are fetched.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Document the source tree next to these docs, whether or not the package is installed.
sys.path.insert(0, str(ROOT / "src"))

project = "consentmw"
author = "The consentmw authors"
copyright = "The consentmw authors"

try:
    release = version("consentmw")
except PackageNotFoundError:  # a source tree that was never installed
    from consentmw import __version__ as release
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
]

# The docstrings are reStructuredText prose (double backticks, :class: roles, :raises:
# fields): autodoc reads them as they are, no napoleon needed.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"undoc-members": False}
# Annotations are strings (``from __future__ import annotations``); two documented classes are
# called ConsentMiddleware (the WSGI one and the Django one): annotations mean the WSGI one.
autodoc_type_aliases = {"ConsentMiddleware": "consentmw.ConsentMiddleware"}

nitpicky = False
default_role = "code"
highlight_language = "none"
exclude_patterns = ["_build", "examples/__pycache__"]
templates_path: list[str] = []

html_theme = "furo"
html_title = f"consentmw {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False


# --------------------------------------------------------------------------- the changelog
#
# CHANGELOG.md is Markdown (Keep a Changelog) so that it reads well on its own; the docs
# include it through ``.. include:: ../CHANGELOG.md``. MyST is not a dependency, so the
# small subset of Markdown the changelog uses (ATX headings, "-" lists, `code`, [links](url)
# and **bold**, which reST spells the same) is turned into reStructuredText as the file is read.

_HEADING_MARKS = {1: "=", 2: "-", 3: "~", 4: "^"}


def markdown_to_rst(text: str) -> str:
    out: list[str] = []
    for line in text.splitlines():
        heading = re.match(r"^(#{1,4})\s+(.*?)\s*#*\s*$", line)
        if heading:
            title = _inline(heading.group(2))
            if out and out[-1] != "":
                out.append("")
            out.extend([title, _HEADING_MARKS[len(heading.group(1))] * max(len(title), 4), ""])
            continue
        out.append(_inline(line))
    return "\n".join(out) + "\n"


def _inline(line: str) -> str:
    # Code first (its content is literal), then links outside code spans.
    parts = re.split(r"(`[^`]+`)", line)
    for i, part in enumerate(parts):
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            parts[i] = "``" + part.strip("`") + "``"
        else:
            parts[i] = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r"`\1 <\2>`__", part)
    return "".join(parts)


def _include_read(app, relative_path, parent_docname, content):  # type: ignore[no-untyped-def]
    if Path(str(relative_path)).name == "CHANGELOG.md":
        content[0] = markdown_to_rst(content[0])


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("include-read", _include_read)
    return {"parallel_read_safe": True}

"""Sphinx configuration for the trio-asyncai docs.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html``
(or ``nox -s docs``). The build works offline: the intersphinx links to the
Python, trio, httpx and attrs docs are only fetched when
``TRIO_ASYNCAI_INTERSPHINX=1`` is set (Read the Docs sets ``READTHEDOCS``,
which turns them on too); offline, such references render as plain text.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

project = "trio-asyncai"
author = "The trio-asyncai developers"
copyright = "2026, The trio-asyncai developers"
try:
    release = _dist_version("trio-asyncai")
except PackageNotFoundError:  # building from a tree that was never installed
    release = "0+unknown"
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinxcontrib_trio",
]

root_doc = "index"
exclude_patterns = ["_build"]
nitpicky = False
default_role = "obj"
pygments_style = "default"

# -- autodoc ---------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = False
# sphinxcontrib-trio marks ``async with`` / ``await`` by replacing autodoc's
# function and method documenters; Sphinx 9's new autodoc bypasses them for
# members documented through ``:members:``, so keep the class-based one.
# (Older Sphinx ignores the setting.)
autodoc_use_legacy_class_based = True

# -- intersphinx (opt-in: it needs the network) ------------------------------
_online = os.environ.get("TRIO_ASYNCAI_INTERSPHINX", "") not in ("", "0") or bool(
    os.environ.get("READTHEDOCS")
)
intersphinx_mapping: dict[str, tuple[str, str | None]] = (
    {
        "python": ("https://docs.python.org/3", None),
        "trio": ("https://trio.readthedocs.io/en/stable", None),
        "httpx": ("https://www.python-httpx.org", None),
        "attrs": ("https://www.attrs.org/en/stable", None),
    }
    if _online
    else {}
)

# -- HTML ------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"trio-asyncai {release}"
html_theme_options = {
    "description": "A trio-native SDK for the Async text-to-speech API",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_sidebars = {
    "**": ["about.html", "navigation.html", "relations.html", "searchbox.html"],
}

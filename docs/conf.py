"""Sphinx configuration of the provider's documentation (``make docs``; published at the Documentation URL
of ``pyproject.toml``). Markdown pages are read with MyST; the API pages come from the docstrings (autodoc).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# autodoc imports the provider, hence Airflow: give it a home of its own, never the user's.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "docs" / "_build" / "airflow-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

from airflow_provider_coverbase import __version__  # noqa: E402

project = "airflow-provider-coverbase"
author = "airflow-provider-coverbase developers"
copyright = "the airflow-provider-coverbase developers, Apache-2.0"
release = __version__
version = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "README.md"]
root_doc = "index"

# Heading anchors, so [text](page.md#a-heading) links are resolved by the build: a link to a page, heading
# or label that does not exist is a warning, hence an error in `make docs` (-W). That is the internal link check.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Airflow's own classes are not documented here: a base class's name is enough.
nitpicky = False

html_theme = "furo"
html_title = f"airflow-provider-coverbase {release}"
html_static_path: list[str] = []

"""Sphinx configuration of pyseg's documentation site (build: see docs/README.md)."""

import os
import re
from pathlib import Path

import pyseg

project = "pyseg"
release = pyseg.__version__
version = release
copyright = "pyseg developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "README.md", "gallery", "auto_examples/*.ipynb",
                    "**/*.codeobj.json", "**/sg_execution_times.rst"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# No network in CI: intersphinx only resolves from files when they exist (none are shipped),
# so :func:`torch...` references stay plain text instead of failing the build.
intersphinx_mapping: dict = {}

sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    # Every example runs at build time (and in tests/test_gallery.py): a failure fails the build.
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 1e9,
    "within_subsection_order": "FileNameSortKey",
}
if os.environ.get("PYSEG_DOCS_NO_GALLERY"):
    # Fast local edits of the prose pages: the gallery pages are made but not run.
    sphinx_gallery_conf["plot_gallery"] = "False"

html_theme = "alabaster"
html_title = f"pyseg {release}"
html_theme_options = {"description": "upsampling and deformable kernels for segmentation",
                      "page_width": "1100px", "sidebar_width": "240px"}


# README.md is included as the reference manual page; its links to other repository files
# (benchmarks/RESULTS.md, ...) are not pages of the site, so they become plain file names.
_REPO_LINK = re.compile(r"\[([^\]]+)\]\((?!https?://|#)([^)]+)\)")


def _repo_links_to_text(app, relative_path, parent_docname, content):
    if Path(relative_path).name == "README.md":
        content[0] = _REPO_LINK.sub(r"\1 (file `\2` in the repository)", content[0])


def setup(app):
    app.connect("include-read", _repo_links_to_text)

"""Every gallery example runs and its assertions (what its pictures show) hold.

The examples live in docs/gallery/ (the documentation site runs them too). They run in this
process (a fresh interpreter per example would import torch seven times), with matplotlib's
non-interactive backend, each with the random state and thread count restored afterwards.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import matplotlib
import pytest
import torch

GALLERY = Path(__file__).resolve().parent.parent / "docs" / "gallery"
EXAMPLES = sorted(GALLERY.glob("plot_*.py"))


def test_the_gallery_has_the_examples_the_docs_promise():
    names = {p.stem for p in EXAMPLES}
    assert {"plot_conv_matrix", "plot_ways_up", "plot_checkerboard", "plot_deformable_sampling",
            "plot_explanations", "plot_unet_pets", "plot_bench"} <= names


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_gallery_example_runs(script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng():
            runpy.run_path(str(script), run_name="__main__")
        # The example drew its pictures (and, like a user's run, wrote no files).
        assert plt.get_fignums(), f"{script.name} drew no figure"
        assert not any(tmp_path.iterdir())
    finally:
        plt.close("all")
        torch.set_num_threads(threads)

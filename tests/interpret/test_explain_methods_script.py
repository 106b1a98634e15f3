"""benchmarks/explain_methods.py writes its tables into one section of RESULTS.md, replacing
an earlier run of the same network and leaving the rest of the file alone."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _script():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("explain_methods",
                                                      ROOT / "benchmarks" / "explain_methods.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return mod


def test_write_markdown_replaces_the_same_run(tmp_path):
    em = _script()
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\n\n## A\n\nkept\n\n{em.SECTION}\n\nintro\n\n## B\n\nalso kept\n")
    em.write_markdown(path, "#### net-a (classification)", "`run 1`\n\n| t1 |")
    em.write_markdown(path, "#### net-b (classification)", "`run 2`\n\n| t2 |")
    em.write_markdown(path, "#### net-a (classification)", "`run 3`\n\n| t3 |")
    text = path.read_text()
    assert "run 1" not in text and text.count("#### net-a") == 1
    assert text.index("intro") < text.index("run 3") < text.index("run 2") < text.index("## B")
    assert "kept" in text and "also kept" in text
    # Replacing the section's last block keeps the blank line before the next section.
    em.write_markdown(path, "#### net-b (classification)", "`run 4`\n\n| t4 |")
    text = path.read_text()
    assert "run 2" not in text and "| t4 |\n\n## B\n" in text
    fresh = tmp_path / "new.md"
    em.write_markdown(fresh, "#### x (segmentation)", "| t |")
    assert fresh.read_text().splitlines()[1] == em.SECTION


def test_table_lists_every_row():
    em = _script()
    rows = [{"method": "gradcam", "deletion": 0.1, "insertion": 0.9, "road": 0.2,
             "pointing": 1.0, "seconds": 0.0123}]
    assert em.table(rows).splitlines()[-1] == "| gradcam | 0.100 | 0.900 | 0.200 | 1.000 | 12.3 |"


def test_checkpoint_trains_once_then_loads(tmp_path, monkeypatch, capsys):
    """--checkpoint: the first run trains and saves, the second loads the same weights (no
    training) and gives the same metrics."""
    em = _script()
    ckpt = tmp_path / "net.pt"
    argv = ["explain_methods.py", "--train", "32", "--epochs", "1", "--size", "32", "--test",
            "2", "--width", "4", "--steps", "2", "--threads", "1", "--methods",
            "gradcam,excitation-backprop", "--checkpoint", str(ckpt)]
    monkeypatch.setattr(sys, "argv", argv)
    threads = torch.get_num_threads()
    try:
        em.main()
        first = capsys.readouterr().out
        assert ckpt.exists() and "training images x 1 epochs" in first
        em.main()
        second = capsys.readouterr().out
    finally:
        torch.set_num_threads(threads)  # main() sets the process's thread count
    assert f"weights from {ckpt}" in second

    def metrics(out):  # the table without its time column
        return [line.rsplit("|", 2)[0] for line in out.splitlines() if line.startswith("| ")]

    assert len(metrics(first)) == 4 and metrics(first) == metrics(second)

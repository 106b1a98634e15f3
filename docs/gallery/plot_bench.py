"""
pyseg vs torch speed, from ``pyseg bench --json``
=================================================

``pyseg bench`` times each of pyseg's ops against its torch counterpart in the same run,
after checking that both compute the same thing, and ``--json FILE`` saves the run. This
example runs a quick benchmark of a few small cases and draws the ratio (pyseg's time over
torch's: below 1 pyseg is faster) from the JSON file. ``pyseg bench --plot FILE`` draws a
similar plot itself.

The numbers are those of the machine that built this page, with few and short runs: a
hatched bar is one ``pyseg bench`` marks unreliable (a spread over 10%, a single run, or
both sides at the floor of a busy machine). Measured numbers, each with its command, are in
the repository's ``benchmarks/RESULTS.md``.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pyseg", "bench", "max_unpool2d", "interpolate", "--quick",
         "--min-run-time", "0.02", "--json", str(path)],
        check=False, capture_output=True, text=True,  # failure: the assert shows stderr
    )
    assert proc.returncode == 0, proc.stderr
    run = json.loads(path.read_text())

results = run["results"]
print(f"{len(results)} cases on {run['machine']['cpu']}, {run['machine']['threads']} threads")

# %%
# What the plot shows: every case was checked before it was timed (pyseg's output within
# a tolerance of torch's) and its ratio is the two medians divided.

assert {r["label"] for r in results} == {"max_unpool2d", "interpolate"}
for r in results:
    assert r["status"] == "ok", r["reason"]
    assert r["max_rel_diff"] < 1e-4
    assert abs(r["ratio"] - r["ours"]["median_s"] / r["reference"]["median_s"]) < 1e-9 * r["ratio"]

# %%
# The ratios, on a log scale.

fig, ax = plt.subplots(figsize=(8, 0.6 * len(results) + 1.4))
names = [f"{r['label']}: {r['case_sub_label']}" for r in results]
bars = ax.barh(names, [r["ratio"] for r in results], color="tab:blue")
for bar, r in zip(bars, results):
    if r["unreliable"]:
        bar.set_hatch("//")
        bar.set_alpha(0.6)
ax.axvline(1.0, color="k", lw=1)
ax.set_xscale("log")
ax.set_xlabel("time ratio pyseg / torch (lower is better)")
ax.set_title("pyseg bench --quick (hatched: unreliable)", fontsize=10)
fig.tight_layout()
plt.show()

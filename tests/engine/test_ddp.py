"""Two CPU processes with gloo (what torchrun sets up) vs one process on the same data."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))


def _cfg(out, batch_size):
    from pyseg.engine import TrainConfig

    return TrainConfig(arch="tinynet:TinyNet", arch_kwargs={"width": 4}, img_size=32, epochs=2,
                       batch_size=batch_size, train_samples=8, val_samples=6, out=str(out),
                       seed=3, optimizer="sgd", lr=0.05)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    from pyseg.engine import train

    r = train(_cfg(out, batch_size=2), quiet=True, plots=False)
    torch.save({"state": r.model.state_dict(), "history": r.history},
               Path(out).parent / f"rank{rank}.pt")


def test_ddp_two_processes_match_single_process(tmp_path):
    from pyseg.engine import train

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp" / "run"
    out.parent.mkdir()
    mp.start_processes(_worker, args=(2, port, str(out)), nprocs=2, start_method="spawn")
    r0 = torch.load(out.parent / "rank0.pt", weights_only=True)
    r1 = torch.load(out.parent / "rank1.pt", weights_only=True)
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert (out / "best.pt").is_file() and (out / "metrics.json").is_file()
    # One process with the global batch (2 ranks x 2) sees the same batches.
    single = train(_cfg(tmp_path / "single", batch_size=4), quiet=True, plots=False)
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(r0["state"][k], v, rtol=1e-4, atol=1e-5)
    for a, b in zip(r0["history"], single.history):
        assert abs(a["val_loss"] - b["val_loss"]) < 1e-4
        assert abs(a["val_miou"] - b["val_miou"]) < 1e-3

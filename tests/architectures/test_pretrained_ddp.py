"""Freezing and unfreezing the encoder under DistributedDataParallel (two gloo processes):
DDP reduces the parameters that required gradients when it was built, so the trainer builds
it again when the encoder is unfrozen. Had it not, the encoder's gradients would not be
averaged and the two processes' encoders, trained on different shards, would differ."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

import pyseg


def _cfg(out, batch_size):
    from pyseg.engine import TrainConfig

    return TrainConfig(arch="segnet", arch_kwargs={"width": 0.125},
                       img_size=32, epochs=2, batch_size=batch_size, train_samples=8,
                       val_samples=4, out=str(out), seed=3, optimizer="sgd", lr=0.05,
                       freeze_encoder=True, unfreeze_after=1, encoder_lr=0.02)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from pyseg.engine import train

    r = train(_cfg(out, batch_size=2), quiet=True, plots=False)
    # Parameters only: batch-norm statistics are each process's own.
    torch.save(dict(r.model.named_parameters()), Path(out).parent / f"rank{rank}.pt")


def test_unfreezing_under_ddp_keeps_the_processes_in_step(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp" / "run"
    out.parent.mkdir()
    mp.start_processes(_worker, args=(2, port, str(out)), nprocs=2, start_method="spawn")
    r0 = torch.load(out.parent / "rank0.pt", weights_only=True)
    r1 = torch.load(out.parent / "rank1.pt", weights_only=True)
    torch.manual_seed(3)  # the trainer seeds, then builds: the run's initial weights
    init = dict(pyseg.create_model("segnet", num_classes=3, width=0.125).named_parameters())
    assert r0.keys() == r1.keys() == init.keys()
    for k in r0:
        torch.testing.assert_close(r0[k], r1[k], rtol=1e-5, atol=1e-6, msg=k)
    # The encoder did train (in epoch 2: frozen in epoch 1).
    enc = [k for k in r0 if k.startswith("encoder.")]
    assert enc and all(not torch.equal(r0[k], init[k]) for k in enc)

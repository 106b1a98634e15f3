"""Several CPU processes with gloo: spawned as torchrun would, and through the README's real
torchrun command lines (a run killed and restarted included)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

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


# --------------------------------------------------------- exact validation across ranks

def _eval_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from tinynet import TinyNet

    from pyseg.engine import evaluate_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        net = nn.parallel.DistributedDataParallel(TinyNet(width=4, batch_norm=True))
        # One training step first: the wrapper would then broadcast its batch-norm buffers
        # at the next forward, a collective that a rank with fewer batches never joins.
        net(torch.rand(2, 3, 16, 16)).sum().backward()
        results = {}
        for n in (1, 5, 7):  # rank 1 gets 0, 2, 3 samples: one batch fewer than rank 0 at 5
            results[n] = evaluate_model(net, _eval_set(n), CLASSES, batch_size=2, rank=rank,
                                        world=world)
        if rank == 0:
            torch.save({"results": results, "state": net.module.state_dict()},
                       Path(out) / "eval.pt")
        dist.barrier()  # neither rank closes its connections while the other still uses them
        del net  # the DDP wrapper's reducer goes before its process group
    finally:
        dist.destroy_process_group()


CLASSES = ["foreground", "background", "contour"]


def _eval_set(n):
    g = torch.Generator().manual_seed(n)
    return [(torch.rand(3, 16, 16, generator=g), torch.randint(0, 3, (16, 16), generator=g))
            for _ in range(n)]


def test_validation_metrics_are_exact_when_the_set_does_not_divide(tmp_path):
    from tinynet import TinyNet

    from pyseg.engine import evaluate_model

    mp.start_processes(_eval_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
                       start_method="spawn")
    saved = torch.load(tmp_path / "eval.pt", weights_only=True)
    net = TinyNet(width=4, batch_norm=True)
    net.load_state_dict(saved["state"])
    for n, got in saved["results"].items():
        want = evaluate_model(net, _eval_set(n), CLASSES, batch_size=n)  # one process, one batch
        # Confusion counts are integers: a sample counted twice or dropped shows here.
        assert got["pixel_acc"] == want["pixel_acc"] and got["iou"] == want["iou"], n
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-6), n


# ------------------------------------------------------------- the README's torchrun commands

README = Path(__file__).parents[2] / "README.md"
SECTION = "## Training on several processes or machines"
ENGINE_TESTS = Path(__file__).parent
# Small enough for seconds per attempt; batch norm, so that buffers are resumed too. Passed
# after the README's options, which they override.
TINY = ["--arch", "tinynet:KilledOnce", "--arch-kwargs", '{"width": 4, "batch_norm": true}',
        "--img-size", "32", "--epochs", "3", "--batch-size", "2", "--train-samples", "8",
        "--val-samples", "7", "--seed", "3", "--optimizer", "sgd", "--lr", "0.05",
        "--threads", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_commands() -> list[str]:
    """The torchrun command lines of the README's section on several processes."""
    text = README.read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    return [line for line in section.splitlines() if line.startswith("torchrun ")]


def _readme_command(*words: str, without: str = "") -> list[str]:
    """The one README command line with all of ``words`` and not ``without``."""
    found = [c for c in readme_commands()
             if all(w in c.split() for w in words) and without not in c.split()]
    assert len(found) == 1, (words, readme_commands())
    return shlex.split(found[0])


def _torchrun_argv(command: list[str], out: Path, torchrun_options=()) -> list[str]:
    """``command`` (a README line) with ``python -m torch.distributed.run`` for torchrun,
    ``torchrun_options`` added to torchrun's and the tiny run's options to pyseg's."""
    module = command.index("-m")
    return [sys.executable, "-m", "torch.distributed.run", *command[1:module],
            *torchrun_options, "-m", "pyseg", *command[module + 2:], *TINY, "--out", str(out)]


def _env(extra=None) -> dict:
    path = os.pathsep.join(filter(None, [str(ENGINE_TESTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **(extra or {})}


def _run_torchrun(command: list[str], out: Path, env_extra=None, timeout=120):
    argv = _torchrun_argv(command, out)
    done = subprocess.run(argv, env=_env(env_extra), capture_output=True, text=True,
                          timeout=timeout, cwd=out.parent, check=False)
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The README's single-machine command, 2 CPU processes, run to the end."""
    out = tmp_path_factory.mktemp("torchrun") / "run"
    done = _run_torchrun(_readme_command("--standalone", without="--max-restarts"), out)
    return out, done


def test_readme_shows_the_commands_that_are_tested():
    commands = readme_commands()
    assert len(commands) == 3
    single, restarting, nodes = (_readme_command("--standalone", without="--max-restarts"),
                                 _readme_command("--max-restarts", "--standalone"),
                                 _readme_command("--nnodes"))
    assert "--resume" not in single and restarting[-4:-2] == ["--resume", "auto"]
    assert {"--rdzv-endpoint", "--rdzv-id", "--resume"} <= set(nodes)


def test_torchrun_two_cpu_processes(uninterrupted):
    from tinynet import TinyNet

    from pyseg.data.synthetic import SyntheticPets
    from pyseg.engine import evaluate_model, load_checkpoint

    out, done = uninterrupted
    for name in ("best.pt", "last.pt", "metrics.jsonl", "metrics.json", "loss.png",
                 "predictions.png"):
        assert (out / name).is_file(), name
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone reports
    last = load_checkpoint(out / "last.pt")
    assert last["config"]["world_size"] == 2
    # 7 validation images on 2 processes: the metrics are exactly those of one process.
    net = TinyNet(width=4, batch_norm=True)
    net.load_state_dict(last["model"])
    val = SyntheticPets("val", img_size=32, length=7, seed=3)
    want = evaluate_model(net, val, CLASSES)
    assert lines[-1]["val_pixel_acc"] == want["pixel_acc"]
    assert lines[-1]["val_iou"] == want["iou"]
    assert lines[-1]["val_loss"] == pytest.approx(want["loss"], rel=1e-6)


def test_torchrun_restart_resumes_a_killed_run(uninterrupted, tmp_path):
    full, _ = uninterrupted
    out = tmp_path / "run"
    marker = tmp_path / "killed"
    # Rank 1 is killed at its 4th training step: epoch 2's second step, after epoch 1's
    # last.pt is written (its first step's gradient exchange waited for rank 0 to get there).
    done = _run_torchrun(_readme_command("--max-restarts", "--standalone"), out,
                         {"PYSEG_TEST_KILL_AT": "1:4", "PYSEG_TEST_KILL_MARKER": str(marker)})
    assert marker.read_text() == "4\n"
    assert "resuming" in done.stdout and "at epoch 1 of 3" in done.stdout
    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    assert b["epoch"] == 3 and [h["epoch"] for h in b["history"]] == [1, 2, 3]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [h["val_loss"] for h in a["history"]] == [h["val_loss"] for h in b["history"]]


def test_torchrun_two_machines(uninterrupted, tmp_path):
    # The README's command for two machines, both on this one: the rendezvous endpoint on
    # the loopback address, one CPU process per "machine" instead of 4 GPUs.
    full, _ = uninterrupted
    command = _readme_command("--nnodes")
    endpoint = command.index("--rdzv-endpoint") + 1
    command[endpoint] = f"127.0.0.1:{_free_port()}"
    out = tmp_path / "run"
    argv = _torchrun_argv(command, out, ["--nproc-per-node", "1"]) + ["--device", "cpu"]
    # Each node logs to its own file: with pipes read one node after the other, a node whose
    # unread pipe filled would block on a write while the other waited for it at the
    # agents' exit barrier.
    log_paths = [tmp_path / f"node{i}.log" for i in range(2)]
    log_files = [path.open("w") for path in log_paths]
    nodes = [subprocess.Popen(argv, env=_env(), stdout=f, stderr=subprocess.STDOUT, text=True,
                              cwd=tmp_path) for f in log_files]
    deadline = time.monotonic() + 240
    try:
        for node in nodes:
            node.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for node in nodes:
            node.kill()
        for f in log_files:
            f.close()
    logs = [path.read_text() for path in log_paths]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(logs)
    assert sum(log.count("wrote ") for log in logs) == 1  # global rank 0 alone writes
    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k

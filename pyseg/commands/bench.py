"""``pyseg bench``: time pyseg's ops against torch / torchvision in the same run."""

from __future__ import annotations

import argparse
import sys

HELP = "benchmark pyseg's ops against their torch / torchvision counterparts"

DTYPE_CHOICES = ("float32", "float64", "bfloat16", "float16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``pyseg bench`` to ``parser`` (the CLI calls this)."""
    parser.add_argument("ops", nargs="*", metavar="OP",
                        help="ops (case labels) or case names to run; all when omitted")
    parser.add_argument("--backward", action="store_true",
                        help="also time forward + backward cases (default: forward only)")
    parser.add_argument("--dtype", action="append", choices=DTYPE_CHOICES,
                        help="dtype of the inputs (repeatable; default float32)")
    parser.add_argument("--device", action="append", choices=("cpu", "cuda"),
                        help="device (repeatable; default cpu, plus cuda when a GPU is present)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="intra-op threads while timing (default: torch.get_num_threads(); "
                             "1 gives steadier numbers for small cases on a busy machine)")
    parser.add_argument("--interleave", action="store_true",
                        help="alternate the two sides' timed blocks (A B A B ...) and report "
                             "the median of the per-pair ratios: holds when the machine's "
                             "speed drifts during a run")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes and short timing: a smoke run in well under a minute")
    parser.add_argument("--min-run-time", type=float, metavar="S",
                        help="seconds per blocked_autorange (default 0.5; 0.02 with --quick)")
    parser.add_argument("--no-memory", action="store_true",
                        help="do not measure peak extra memory")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--plot", metavar="FILE", help="write a PNG bar plot of the ratios")
    parser.add_argument("--models", action="store_true",
                        help="time every segmentation network with pyseg's modules against "
                             "the same network with torch's (OP names networks instead)")
    # The user's own network (pyseg/bench/user_model.py).
    parser.add_argument("--model", metavar="MODULE:FACTORY|NAME",
                        help="time this network as it is against the same network with "
                             "pyseg's kernels (pyseg.nn.convert + pyseg.kernels), forward and "
                             "training step; prints which calls went to pyseg")
    parser.add_argument("--model-kwargs", metavar="JSON", default="{}",
                        help="keyword arguments of the --model factory, as a JSON object")
    parser.add_argument("--input", metavar="N,C,H,W",
                        help="input shape for --model (default 1,3,256,256; 1,3,64,64 with "
                             "--quick)")
    parser.add_argument("--list", action="store_true",
                        help="list the selected cases instead of running them")
    parser.add_argument("--emu-profile", action="store_true",
                        help="instead of timing, run the --quick shapes of the selected ops "
                             "through the emulated CUDA kernels and print their memory "
                             "counters (sectors and bank conflicts per request, atomics, "
                             "barriers); --json writes them")


def run(args: argparse.Namespace) -> int:
    """Carry out ``pyseg bench`` with the parsed ``args``; returns the exit status."""
    import torch

    from pyseg import bench
    from pyseg.cli import UsageError
    from pyseg.commands import _common

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    if args.min_run_time is not None and args.min_run_time <= 0:
        raise UsageError(f"--min-run-time must be positive, got {args.min_run_time}")
    # Output files are checked before the run, not after minutes of timing.
    for flag in ("json", "plot"):
        if getattr(args, flag, None):
            _common.output_file(getattr(args, flag), f"--{flag}")
    devices = list(dict.fromkeys(args.device or
                                 (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])))
    if "cuda" in devices and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available here")
    dtypes = [bench.DTYPES[d] for d in dict.fromkeys(args.dtype or ["float32"])]
    try:
        if args.model:
            from pyseg.bench import user_model

            try:
                setup = user_model.from_args(args.model, args.model_kwargs, args.input,
                                             quick=args.quick)
            except (ValueError, TypeError) as e:
                raise UsageError(str(e)) from None
            cases = user_model.model_cases(setup)
        elif args.models:
            from pyseg.bench import models

            cases = models.model_cases(models.model_setups(args.ops, quick=args.quick))
        else:
            cases = bench.select(bench.collect_cases(), args.ops, quick=args.quick,
                                 backward=args.backward)
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    if not cases:
        raise UsageError("no benchmark case selected")

    if args.emu_profile:
        return _emu_profile(args, bench.select(bench.collect_cases(), args.ops, quick=True,
                                               backward=args.backward))

    if args.list:
        for c in cases:
            mode = "fwd+bwd" if c.backward else "fwd"
            print(f"{c.name:<48} {c.label:<18} {mode:<8} {c.sub_label}")
        return 0

    min_run_time = args.min_run_time or (0.02 if args.quick else 0.5)
    threads = args.threads or torch.get_num_threads()
    total = len(cases) * len(devices) * len(dtypes)
    done = 0

    def progress(result: bench.CaseResult, seconds: float) -> None:
        nonlocal done
        done += 1
        tail = f"ratio {result.ratio:.2f}" if result.status == "ok" else result.reason
        if result.agreement:
            tail += " (agreement judged against float64)"
        print(f"[{done}/{total}] {result.status:<8} {result.label}: {result.sub_label}  "
              f"({seconds:.1f}s) {tail}", file=sys.stderr, flush=True)

    facts = bench.machine_facts(threads)  # before the run: the load of other work
    warning = bench.competition_warning(facts)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    results = bench.run(cases, devices=devices, dtypes=dtypes, threads=threads,
                        min_run_time=min_run_time, memory=not args.no_memory,
                        interleave=args.interleave, progress=progress)
    facts = bench.machine_facts(threads, start=facts)
    print(bench.header(facts))
    if args.model:
        print(user_model.report(setup, devices, dtypes, results) + "\n")
    if args.models:
        from pyseg.bench.models import model_table

        print(model_table(results) + "\n")
    print(bench.render(results))
    # The exact command, when this is the `pyseg` program (not a caller of pyseg.cli.main).
    import os

    is_cli = os.path.basename(sys.argv[0]) in ("pyseg", "__main__.py") and "bench" in sys.argv
    command = ["pyseg", *sys.argv[1:]] if is_cli else None
    if args.json:
        settings = {"min_run_time": min_run_time, "memory": not args.no_memory,
                    "devices": devices, "dtypes": list(dict.fromkeys(args.dtype or ["float32"])),
                    "quick": args.quick, "backward": args.backward, "ops": args.ops,
                    "models": args.models, "model": args.model,
                    "interleave": args.interleave}
        bench.write_json(args.json, results, command=command, threads=threads,
                         settings=settings, machine=facts)
    if args.plot and not bench.plot(args.plot, results):
        print("pyseg bench: nothing was timed, no plot written", file=sys.stderr)
    failed = [r for r in results if r.status in ("refused", "error")]
    return 1 if failed else 0


def _emu_profile(args: argparse.Namespace, cases: list) -> int:
    import json

    from pyseg.bench import emu_profile
    from pyseg.cli import UsageError
    from pyseg.ops import _library

    if "pyseg_emu" not in _library.NAMESPACES:
        raise UsageError("--emu-profile needs the CUDA emulator: rebuild with PYSEG_EMU=1")
    cases = [c for c in cases if c.quick or c.name in args.ops]
    if not cases:
        raise UsageError("--emu-profile: no --quick case among the selected ops")
    results = emu_profile.profile_cases(cases)
    print(emu_profile.render_profile(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_json() for r in results], f, indent=1)
    return 0

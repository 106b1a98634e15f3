"""``pyseg export``: a trained checkpoint as an ONNX model or a ``torch.export`` program."""

from __future__ import annotations

import argparse

HELP = "export a checkpoint to ONNX (onnxruntime, TensorRT, ...) or a torch.export program"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``pyseg export`` to ``parser`` (the CLI calls this)."""
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a .pt from pyseg train")
    parser.add_argument("--format", required=True, choices=["onnx", "torch-export"],
                        help="onnx: an .onnx file; torch-export: a .pt2 for torch.export.load "
                             "(needs `import pyseg` to run)")
    parser.add_argument("--out", required=True, metavar="FILE")
    parser.add_argument("--arch", default=None, metavar="NAME|MODULE:FACTORY",
                        help="build this architecture instead of the checkpoint's (the way to "
                             "load a model whose architecture is an import path)")
    parser.add_argument("--img-size", type=int, default=None, metavar="N",
                        help="input height and width (default: the checkpoint's); the batch "
                             "size stays dynamic")


def run(args: argparse.Namespace) -> int:
    """Carry out ``pyseg export`` with the parsed ``args``; returns the exit status."""
    import torch

    from pyseg.cli import UsageError
    from pyseg.engine import load_model

    model, state = load_model(args.checkpoint, arch=args.arch)
    size = args.img_size or int(state.get("img_size", 64))
    in_channels = int(state.get("in_channels", 3))
    # An example batch of 2: with 1 the exporter would fix the batch size at 1.
    example = torch.rand(2, in_channels, size, size)
    dynamic_shapes = ({0: torch.export.Dim("batch")},)
    if args.format == "onnx":
        try:
            torch.onnx.export(model, (example,), args.out, dynamo=True, verbose=False,
                              input_names=["images"], output_names=["logits"],
                              dynamic_shapes=dynamic_shapes)
        except ImportError as e:
            raise UsageError(f"ONNX export needs onnx and onnxscript ({e}); "
                             "pip install 'torch-pyseg[onnx]'") from None
        _check_with_onnxruntime(model, args.out, example)
    else:
        program = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)
        torch.export.save(program, args.out)
    print(f"wrote {args.out} ({state['arch']}, input (batch, {in_channels}, {size}, {size}))")
    return 0


def _check_with_onnxruntime(model, path: str, example) -> None:
    """Run the file in onnxruntime, when installed, and print how far it is from pyseg."""
    try:
        import onnxruntime
    except ImportError:
        return
    import torch

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": example.numpy()})
    with torch.no_grad():
        expected = model(example)
    diff = (torch.from_numpy(got) - expected).abs().max().item()
    print(f"onnxruntime: max |onnx - pyseg| = {diff:.3g} on a random batch of {len(example)}")

"""The ``emokernels`` command line."""

from __future__ import annotations

import argparse
import os
import platform
import sys

import torch

import emokernels

# The values EMOKERNELS_CPU_ISA may take (the C++ cpu_isa op checks them).
CPU_ISAS = ("auto", "avx512", "avx2", "portable")
# What the kernel path of each op depends on: (label, dtype, m rows, n columns, channels).
KERNEL_CASES = {
    "pack_bits": [("float32", "float32", 1, 1, 1), ("other dtypes", "bfloat16", 1, 1, 1)],
    "pack_channels": [("float32 NCHW or channels-last", "float32", 1, 1, 1)],
    "xnor_gemm": [("int32", "int32", 1, 1, 1)],
    "bwn_gemm": [("float32 M<8 (batch 1)", "float32", 1, 4096, 1),
                 ("float32 M 8-15", "float32", 12, 4096, 1),
                 ("float32 M>=16, N>=32", "float32", 256, 256, 1),
                 ("bfloat16", "bfloat16", 256, 256, 1)],
    "bwn_conv2d": [("float32 C%16=0, 16+ pixels", "float32", 256, 256, 64),
                   ("float32 other C", "float32", 256, 256, 3)],
    # n stands for the block of the hashed ops
    "hashed_linear": [("exact hashing", "float32", 1, 1, 1), ("block > 1", "float32", 1, 16, 1)],
    "cp_conv2d": [("float32", "float32", 1, 1, 1)],
}


def info_lines() -> list[str]:
    """Versions, compiled backends, CPU features and the kernel path each op takes."""
    kernels = torch.ops.emokernels
    cuda = kernels.cuda_compiled()
    lines = [
        f"emokernels {emokernels.__version__}",
        f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'})",
        f"python {platform.python_version()} on {platform.machine()}",
        f"backends: CPU{', CUDA' if cuda else ''} compiled; CUDA device: "
        f"{torch.cuda.get_device_name() if cuda and torch.cuda.is_available() else 'none'}",
        f"cpu features: {kernels.cpu_features() or 'none detected'}",
        f"cpu path: {kernels.cpu_isa()} (force with EMOKERNELS_CPU_ISA={'|'.join(CPU_ISAS)})",
        f"threads: {torch.get_num_threads()}",
        "kernel paths:",
    ]
    for op, cases in KERNEL_CASES.items():
        paths = "; ".join(f"{label}: {kernels.cpu_kernel_path(op, dtype, m, n, c)}"
                          for label, dtype, m, n, c in cases)
        lines.append(f"  {op:<13} cpu ({paths})" + ("; cuda" if cuda else ""))
    return lines


def _data_spec(spec: str) -> str:
    """argparse type of ``--data``: a bad spec is a usage error, not a traceback mid-run."""
    from .data.sources import parse_spec  # lazily: torchvision is slow to import for `info`

    try:
        _, path = parse_spec(spec)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    if path and not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"{path} not found")
    return spec


def _teacher_spec(spec: str) -> str:
    """argparse type of ``--teacher``: vgg_s, fer or an existing file."""
    if spec not in ("vgg_s", "fer") and not os.path.isfile(spec):
        raise argparse.ArgumentTypeError(f"{spec!r} is not vgg_s, fer or an existing file")
    return spec


def _unlabelled_spec(spec: str) -> str:
    """argparse type of ``--unlabelled``: synthetic or folder:PATH of an existing folder."""
    kind, _, path = spec.partition(":")
    if spec != "synthetic" and not (kind == "folder" and path):
        raise argparse.ArgumentTypeError(f"unknown unlabelled data {spec!r}: use synthetic or "
                                         "folder:PATH")
    if path and not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is not a folder")
    return spec


def _info() -> int:
    """Prints :func:`info_lines`; a bad EMOKERNELS_CPU_ISA is reported with exit status 2."""
    try:
        torch.ops.emokernels.cpu_isa()  # reads EMOKERNELS_CPU_ISA; raises if it is unusable
    except RuntimeError as err:
        print(f"emokernels: {str(err).splitlines()[0]}\n"
              f"EMOKERNELS_CPU_ISA must be one of {', '.join(CPU_ISAS)} (or unset), and name "
              "a path this CPU supports", file=sys.stderr)
        return 2
    print("\n".join(info_lines()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emokernels`` command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="emokernels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, backends, CPU features and kernel paths")
    reproduce = sub.add_parser("reproduce", help="reproduce one of the paper's experiments")
    reproduce.add_argument("experiment", choices=["table2", "table3"])
    reproduce.add_argument("--quick", action="store_true",
                           help="scaled-down training (small images, few epochs); full-size timing")
    reproduce.add_argument("--tiny", action="store_true",
                           help="table2: the quick run on a few images, one epoch, small "
                           "models (a minute or two: checks the install, reports nothing)")
    reproduce.add_argument("--methods", type=lambda text: tuple(text.split(",")),
                           help="table2: the rows to run, comma-separated keys (default: all; "
                           "--quick: the paper's seven), e.g. vgg_s,hashed,hashed_block16")
    reproduce.add_argument("--data", default="synthetic", type=_data_spec,
                           help="synthetic | rafd:PATH | fer2013:PATH | folder:PATH")
    reproduce.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    reproduce.add_argument("--epochs", type=int, help="override the number of epochs "
                           "(table3: of the students)")
    reproduce.add_argument("--out", help="output folder (default: <experiment>_out)")
    reproduce.add_argument("--teacher", action="append", type=_teacher_spec,
                           help="table3: vgg_s | fer | PATH (a Keras .hdf5 mini-Xception or a "
                           "table2 VGG-S checkpoint); repeat for several (default: vgg_s with "
                           "--quick, else vgg_s and fer)")
    reproduce.add_argument("--unlabelled", type=_unlabelled_spec,
                           help="table3: the unlabelled faces, synthetic (default) | "
                           "folder:PATH")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    if args.experiment != "table3" and (args.teacher or args.unlabelled):
        parser.error("--teacher and --unlabelled apply to table3 only")
    if args.tiny and (args.experiment != "table2" or args.quick):
        parser.error("--tiny applies to table2 alone, instead of --quick")
    if args.methods and args.experiment != "table2":
        parser.error("--methods applies to table2 only")
    from .experiments import table2, table3

    if hasattr(sys.stdout, "reconfigure"):  # a line per epoch reaches a log file as it happens
        sys.stdout.reconfigure(line_buffering=True)

    settings_type, run = {"table2": (table2.Settings, table2.run_table2),
                          "table3": (table3.Settings, table3.run_table3)}[args.experiment]

    overrides = dict(data=args.data, device=args.device)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
        if args.experiment == "table2":
            overrides["method_epochs"] = {}  # every row, then
    if args.methods:
        overrides["methods"] = args.methods
    if args.teacher:
        overrides["teachers"] = tuple(args.teacher)
    if args.unlabelled:
        overrides["unlabelled"] = args.unlabelled
    settings = (settings_type.tiny(**overrides) if args.tiny
                else settings_type.quick(**overrides) if args.quick
                else settings_type(**overrides))
    if args.experiment == "table2":
        try:
            table2.chosen_methods(settings)
        except ValueError as err:
            parser.error(str(err))
    out = args.out or f"{args.experiment}_out"
    run(settings, out)
    name = args.experiment
    print(f"\nwrote {name}.json, {name}.csv and {name}.png to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

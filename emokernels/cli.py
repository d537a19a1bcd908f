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
    "xnor_gemm": [("int32", "int32", 1, 1, 1)],
    "bwn_gemm": [("float32 M<16 or N<32", "float32", 1, 4096, 1),
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
        lines.append(f"  {op:<10} cpu ({paths})" + ("; cuda" if cuda else ""))
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
    reproduce.add_argument("experiment", choices=["table2"])
    reproduce.add_argument("--quick", action="store_true",
                           help="scaled-down training (64x64, few epochs); full-size measures")
    reproduce.add_argument("--data", default="synthetic", type=_data_spec,
                           help="synthetic | rafd:PATH | fer2013:PATH | folder:PATH")
    reproduce.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    reproduce.add_argument("--epochs", type=int, help="override the number of epochs")
    reproduce.add_argument("--out", default="table2_out", help="output folder")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    from .experiments.table2 import Settings, run_table2

    overrides = dict(data=args.data, device=args.device)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    settings = Settings.quick(**overrides) if args.quick else Settings(**overrides)
    run_table2(settings, args.out)
    print(f"\nwrote table2.json, table2.csv and table2.png to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Mamba mixer's C kernel at another git revision against the working tree's.

    python benchmarks/mixer_revisions.py --base 4288dee  # the one-channel-at-a-time kernel

Builds ``kernels/scan.c`` (with ``common.h``) of ``--base`` and of the working tree with
the flags of ``hymoerec.kernels``, loads both, and times ``scan_kernel.NativeMixer``
forward and backward on one ML-1M-shaped Mamba layer input ((32, 200), d_inner 128, d_state
32; u and z halves of one projection, B and C slices of another, as ``Mamba.forward``
passes them) in float32 and in bf16, the two builds alternating, ``--rounds`` rounds
after one untimed. Prints the median milliseconds, base / tree, and the largest
difference between the two builds' outputs and gradients (relative to the largest
value), which is rounding: the two sum in different orders.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from hymoerec import kernels
from hymoerec.models import scan_kernel

SOURCES = ("scan.c", "common.h")


def build(folder: Path, revision: str | None) -> ctypes.CDLL:
    """scan.c of ``revision`` (None: the working tree) as a loaded library."""
    folder.mkdir(parents=True)
    for name in SOURCES:
        if revision is None:
            text = (kernels.SOURCES / name).read_text()
        else:
            path = f"{revision}:src/hymoerec/kernels/{name}"
            text = subprocess.run(
                ["git", "show", path], check=True, capture_output=True, text=True
            ).stdout
        (folder / name).write_text(text)
    target = folder / "scan.so"
    command = [kernels.compiler(), *kernels.FLAGS, str(folder / "scan.c"), "-o", str(target), "-lm"]
    subprocess.run(command, check=True)
    loaded = ctypes.CDLL(str(target))
    original = kernels.load
    kernels.load = lambda name: loaded  # type: ignore[assignment]
    try:  # the argument types that scan_kernel.library sets
        return scan_kernel.library.__wrapped__()  # type: ignore[attr-defined, no-any-return]
    finally:
        kernels.load = original  # type: ignore[assignment]


def layer_inputs(dtype: torch.dtype) -> list[torch.Tensor]:
    """u, x, bias, A, B, C, D, z of one layer, as leaves."""
    g = torch.Generator().manual_seed(0)
    batch, length, d_inner, d_state = 32, 200, 128, 32
    u, z = torch.randn(batch, length, 2 * d_inner, generator=g).to(dtype).chunk(2, dim=-1)
    x = (torch.randn(batch, length, d_inner, generator=g) * 0.5 - 1).to(dtype)
    projected = torch.randn(batch, length, 4 + 2 * d_state, generator=g).to(dtype)
    B, C = projected[..., 4 : 4 + d_state], projected[..., 4 + d_state :]
    ranks = torch.arange(1, d_state + 1).float().log().repeat(d_inner, 1)
    A = -torch.exp(ranks + 0.1 * torch.randn(d_inner, d_state, generator=g))
    bias, D = torch.rand(d_inner, generator=g) * 0.5, torch.randn(d_inner, generator=g)
    return [t.detach().requires_grad_() for t in (u, x, bias, A, B, C, D, z)]


def run(library: ctypes.CDLL, inputs: list[torch.Tensor], grad: torch.Tensor):
    """(output, gradients, forward seconds, backward seconds) with this library."""
    scan_kernel.library = lambda: library  # type: ignore[assignment]
    for t in inputs:
        t.grad = None
    begin = time.perf_counter()
    out = scan_kernel.NativeMixer.apply(*inputs)
    middle = time.perf_counter()
    out.backward(grad)
    end = time.perf_counter()
    return out.detach(), [t.grad for t in inputs], middle - begin, end - middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as folder:
        libraries = {
            args.base: build(Path(folder) / "base", args.base),
            "tree": build(Path(folder) / "tree", None),
        }
        for dtype in (torch.float32, torch.bfloat16):
            inputs = layer_inputs(dtype)
            grad = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(1))
            grad = grad.to(dtype)
            first = {name: run(lib, inputs, grad) for name, lib in libraries.items()}
            (out_a, grads_a, *_), (out_b, grads_b, *_) = first.values()
            differences = [
                (a.float() - b.float()).abs().max() / b.float().abs().max()
                for a, b in zip([out_a, *grads_a], [out_b, *grads_b], strict=True)
            ]
            times: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in libraries}
            for _ in range(args.rounds):
                for name, lib in libraries.items():
                    _, _, forward, backward = run(lib, inputs, grad)
                    times[name][0].append(1e3 * forward)
                    times[name][1].append(1e3 * backward)
            medians = {n: [statistics.median(v) for v in pair] for n, pair in times.items()}
            base, tree = medians[args.base], medians["tree"]
            print(f"\n{dtype}: largest relative difference {max(differences):.2g}")
            for name, (forward, backward) in medians.items():
                print(f"  {name:12s} forward {forward:6.2f} ms  backward {backward:6.2f} ms")
            print(
                f"  {args.base} / tree: forward {base[0] / tree[0]:.2f}x, "
                f"backward {base[1] / tree[1]:.2f}x, both {sum(base) / sum(tree):.2f}x"
            )


if __name__ == "__main__":
    main()

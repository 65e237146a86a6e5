"""Time selective-scan strategies (forward + backward) and the whole Mamba4Rec/HyMoERec step.

Run: ``.venv/bin/python benchmarks/bench_scan.py [--batch 128] [--length 200]``.
``--native`` times the training scan's C kernel (``scan_kernel.native_scan``, what
``train.compile_scan`` runs) against the compiled chunks it replaced, alternating.
``--final`` times inference instead: the state at each row's last position, as a full
ranking computes it (``scan.last_output``), against the copying version it replaced.
Shapes default to MovieLens-1M training: d_model 64, expand 2 (d_inner 128), d_state 32.
Each strategy is checked against the step-by-step recurrence on a small slice first; the
compiled one compiles during that check, so its time excludes compilation.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hymoerec.models import SequentialModel, build_model, scan
from hymoerec.models.mamba import SelectiveScan
from hymoerec.models.scan_kernel import native_last_output, native_scan

Scan = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def autograd_loop(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """Step-by-step recurrence, differentiated by autograd (also the reference)."""
    decay = torch.exp(delta.unsqueeze(-1) * A).unbind(1)  # L x (B, Di, N)
    inject = ((delta * u).unsqueeze(-1) * B.unsqueeze(2)).unbind(1)  # L x (B, Di, N)
    h = u.new_zeros(u.size(0), u.size(2), A.size(1))
    ys = []
    for t, c in enumerate(C.unbind(1)):
        h = decay[t] * h + inject[t]
        ys.append(torch.bmm(h, c.unsqueeze(-1)).squeeze(-1))  # (B, Di)
    return torch.stack(ys, dim=1)  # (B, L, Di)


def chunked_log_space(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int = 16
) -> Tensor:
    """Within a chunk h_t = exp(S_t) (h_0 + cumsum_s exp(-S_s) v_s), S = cumsum(delta A);
    states carried across chunks. exp(-S) overflows once a chunk's decay passes e^88."""
    h = u.new_zeros(u.size(0), u.size(2), A.size(1))
    ys = []
    for s in range(0, u.size(1), chunk):
        d = delta[:, s : s + chunk]
        log_decay = torch.cumsum(d.unsqueeze(-1) * A, dim=1)  # (B, T, Di, N)
        v = (d * u[:, s : s + chunk]).unsqueeze(-1) * B[:, s : s + chunk].unsqueeze(2)
        states = torch.exp(log_decay) * (
            h.unsqueeze(1) + torch.cumsum(torch.exp(-log_decay) * v, dim=1)
        )
        ys.append(torch.einsum("btdn,btn->btd", states, C[:, s : s + chunk]))
        h = states[:, -1]
    return torch.cat(ys, dim=1)


class ChunkedRecompute(torch.autograd.Function):
    """Vectorised per-chunk work, sequential only inside chunks; keeps one state per
    chunk and recomputes the chunk's states in backward (low memory)."""

    chunk = 8

    @staticmethod
    def forward(ctx: Any, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        T = ChunkedRecompute.chunk
        h = u.new_zeros(u.size(0), u.size(2), A.size(1))
        du, y, starts = delta * u, torch.empty_like(u), []
        for s in range(0, u.size(1), T):
            starts.append(h)
            states = _chunk_states(h, delta[:, s : s + T], du[:, s : s + T], A, B[:, s : s + T])
            y[:, s : s + T] = torch.matmul(states, C[:, s : s + T, :, None]).squeeze(-1)
            h = states[:, -1]
        ctx.save_for_backward(u, delta, A, B, C, torch.stack(starts, 1))
        return y

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor, ...]:
        T = ChunkedRecompute.chunk
        u, delta, A, B, C, starts = ctx.saved_tensors
        du = delta * u
        gB, gC, gdu, gdelta = (torch.empty_like(t) for t in (B, C, u, delta))
        gA, carry = torch.zeros_like(A), None
        for c, s in reversed(list(enumerate(range(0, u.size(1), T)))):
            e = min(s + T, u.size(1))
            decay = torch.exp(delta[:, s:e, :, None] * A)
            states = _chunk_states(starts[:, c], delta[:, s:e], du[:, s:e], A, B[:, s:e])
            G = gy[:, s:e, :, None] * C[:, s:e, None, :]
            if carry is not None:
                G[:, -1] += carry
            for i in range(e - s - 2, -1, -1):
                G[:, i].addcmul_(decay[:, i + 1], G[:, i + 1])
            carry = G[:, 0] * decay[:, 0]
            gC[:, s:e] = torch.matmul(gy[:, s:e, None, :], states).squeeze(2)
            gB[:, s:e] = torch.matmul(du[:, s:e, None, :], G).squeeze(2)
            gdu[:, s:e] = torch.matmul(G, B[:, s:e, :, None]).squeeze(-1)
            previous = torch.cat([starts[:, c].unsqueeze(1), states[:, :-1]], 1)
            W = G.mul_(previous).mul_(decay)
            gdelta[:, s:e] = torch.einsum("btdn,dn->btd", W, A)
            gA += torch.einsum("btdn,btd->dn", W, delta[:, s:e])
        gdelta += gdu * u
        return gdu * delta, gdelta, gA, gB, gC


def _chunk_states(h: Tensor, delta: Tensor, du: Tensor, A: Tensor, B: Tensor) -> Tensor:
    decay = torch.exp(delta[..., None] * A)  # (B, T, Di, N)
    states = du[..., None] * B[:, :, None, :]  # (B, T, Di, N), overwritten with h_t
    for i in range(decay.size(1)):
        h = states[:, i].addcmul_(decay[:, i], h)
    return states


def compiled_chunks(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """The library's torch.compile-fused chunks (``train.compile_scan``)."""
    return scan.chunked_scan(u, delta, A, B, C, compiled=True)


STRATEGIES: dict[str, Scan] = {
    "custom per-step Function (library)": SelectiveScan.apply,
    "compiled chunks (library, native_kernels=false)": compiled_chunks,
    "C kernel (library, compile_scan)": native_scan,
    "autograd loop": autograd_loop,
    "chunked log-space (T=16)": chunked_log_space,
    "chunked recompute Function (T=8)": ChunkedRecompute.apply,
}


def scan_inputs(batch: int, length: int, d_inner: int, d_state: int) -> list[Tensor]:
    """Realistic magnitudes: delta = softplus(.) around 0.3, A = -(1..N) (S4D-real)."""
    g = torch.Generator().manual_seed(0)
    A = -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
    tensors = [
        torch.randn(batch, length, d_inner, generator=g),
        F.softplus(torch.randn(batch, length, d_inner, generator=g) - 1),
        A,
        torch.randn(batch, length, d_state, generator=g),
        torch.randn(batch, length, d_state, generator=g),
    ]
    return [t.requires_grad_() for t in tensors]


def max_error(scan: Scan, inputs: list[Tensor]) -> float:
    """Largest deviation of outputs and gradients from the autograd loop."""
    small = [t.detach()[:4, :48].clone() if t.dim() == 3 else t.detach().clone() for t in inputs]
    small = [t.requires_grad_() for t in small]
    ref = autograd_loop(*small)
    weight = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, small, weight)
    out = scan(*small)
    grads = torch.autograd.grad(out, small, weight)
    errors = [(out - ref).abs().max()] + [
        (a - b).abs().max() for a, b in zip(grads, ref_grads, strict=True)
    ]
    return float(torch.stack(errors).max().detach())


def best_time(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def chunk_sizes(inputs: list[Tensor], sizes: list[int], repeats: int) -> None:
    """The compiled chunks at each of ``sizes`` steps per kernel call, alternating
    ``repeats`` rounds after one compile-and-check each; median seconds, ratio to the
    first size."""
    import statistics

    def step() -> None:
        compiled_chunks(*inputs).sum().backward()

    def at(size: int) -> None:
        scan.CHUNK = size
        scan._compiled.clear()  # a new size is a new kernel
        torch._dynamo.reset()

    default = scan.CHUNK
    for size in sizes:  # compile once each, checked
        at(size)
        print(f"chunk {size:3d}: max |err| {max_error(compiled_chunks, inputs):.1e}")
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(repeats):
        for size in sizes:
            at(size)
            step()  # recompiles from Inductor's cache
            begin = time.perf_counter()
            step()
            times[size].append(time.perf_counter() - begin)
    first = statistics.median(times[sizes[0]])
    for size in sizes:
        median = statistics.median(times[size])
        print(f"compiled chunks of {size:3d} steps: fwd+bwd {median:6.3f} s  {first / median:.2f}x")
    at(default)


def native_against_chunks(inputs: list[Tensor], repeats: int) -> None:
    """Forward + backward of the C kernel and of the compiled chunks, alternating
    ``repeats`` rounds after a checked warm-up each; median seconds and the ratio."""
    import statistics

    versions = {"compiled chunks (before)": compiled_chunks, "C kernel (library)": native_scan}
    for name, version in versions.items():
        print(f"{name:26s} max |err| {max_error(version, inputs):.1e}")
    times: dict[str, list[float]] = {name: [] for name in versions}
    for _ in range(repeats):
        for name, version in versions.items():
            begin = time.perf_counter()
            version(*inputs).sum().backward()
            times[name].append(time.perf_counter() - begin)
    first = statistics.median(times["compiled chunks (before)"])
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"  {name:26s} fwd+bwd {median:6.4f} s  {first / median:.2f}x")


def _copied_final_chunk(h: Tensor, delta: Tensor, du: Tensor, A: Tensor, B: Tensor) -> Tensor:
    for t in range(delta.size(0)):
        h = torch.exp(delta[t][:, :, None] * A) * h + du[t][:, :, None] * B[t][:, None, :]
    return h


_copied_kernel = torch.compile(_copied_final_chunk, fullgraph=True)


def copied_last_output(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C_last: Tensor, last: Tensor
) -> Tensor:
    """The previous ``scan.last_output`` (revision 4b51036): u, B and C_last copied to
    float32, delta masked, du formed, and the three made time-major, padded and contiguous
    before compiled chunks of 8 steps read them."""
    u, B, C_last = u.float(), B.float(), C_last.float()
    end = int(last.max()) + 1
    padded = -(-end // 8) * 8
    keep = torch.arange(end)[None, :] <= last[:, None]
    delta = delta[:, :end] * keep[..., None]
    du, delta, B = (
        F.pad(t.transpose(0, 1), (0, 0, 0, 0, 0, padded - end)).contiguous()
        for t in (delta * u[:, :end], delta, B[:, :end])
    )
    h = u.new_zeros(u.size(0), u.size(2), A.size(1))
    for s in range(0, padded, 8):
        h = _copied_kernel(h, delta[s : s + 8], du[s : s + 8], A, B[s : s + 8])
    return torch.bmm(h, C_last[:, :, None]).squeeze(-1)


def chunks_only(*args: Tensor) -> Tensor:
    """``scan.last_output`` with the C kernel turned off: its compiled chunks."""
    *inputs, bias = args
    with scan.use(True, native=False):
        return scan.last_output(*inputs, delta_bias=bias)


def final_state(batch: int, length: int, repeats: int) -> None:
    """Inference at evaluation shapes: u, the step size before its bias and softplus, and
    the projection holding B and C in bf16 (as under a bf16 autocast), every row's last
    position within the batch's last 40 (users sorted by length); median seconds of the
    two versions, alternating (the softplus is timed in both)."""
    import statistics

    g = torch.Generator().manual_seed(0)
    u, delta, A, B, C = (t.detach() for t in scan_inputs(batch, length, 128, 32))
    projection = torch.cat([torch.randn(batch, length, 4, generator=g), B, C], -1).bfloat16()
    B16, C16 = projection[..., 4:36], projection[..., 36:]
    last = torch.randint(max(length - 40, 0), length, (batch,), generator=g)
    last[0] = length - 1
    C_last, u16 = C16[torch.arange(batch), last], u.bfloat16()
    # the step size as dt_proj gives it (bf16), before its float32 bias and softplus
    bias = torch.rand(128, generator=g) - 4.0
    raw = (torch.log(torch.expm1(delta)) - bias).bfloat16()
    versions = {
        "copied, time-major, chunks of 8 (before)": lambda: copied_last_output(
            u16, F.softplus(raw.float() + bias), A, B16, C_last, last
        ),
        f"in place, chunks of {scan.FINAL_CHUNK} (native_kernels=false)": lambda: chunks_only(
            u16, raw, A, B16, C_last, last, bias
        ),
        "C kernel, in place (library)": lambda: native_last_output(
            u16, raw, A, B16, C_last, last, delta_bias=bias
        ),
    }
    outputs = [run() for run in versions.values()]  # compiles each once
    error = max(float((outputs[0] - out).abs().max()) for out in outputs[1:])
    times: dict[str, list[float]] = {name: [] for name in versions}
    for _ in range(repeats):
        for name, run in versions.items():
            begin = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - begin)
    first = statistics.median(next(iter(times.values())))
    print(f"final state of {batch} rows x {length} steps, max |difference| {error:.1e}")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"  {name:52s} {median:6.3f} s  {first / median:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items", type=int, default=3706, help="catalogue size (ML-1M)")
    parser.add_argument(
        "--chunks", help="only the compiled chunks, at these steps per kernel (e.g. 4,8,16)"
    )
    parser.add_argument("--final", action="store_true", help="inference: the last state")
    parser.add_argument("--native", action="store_true", help="C kernel against the chunks")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.final:
        final_state(args.batch, args.length, args.repeats)
        return
    inputs = scan_inputs(args.batch, args.length, 128, 32)
    if args.native:
        native_against_chunks(inputs, args.repeats)
        return
    if args.chunks:
        chunk_sizes(inputs, [int(c) for c in args.chunks.split(",")], args.repeats)
        return

    for name, strategy in STRATEGIES.items():
        error = max_error(strategy, inputs)

        def step(strategy: Scan = strategy) -> None:
            strategy(*inputs).sum().backward()

        seconds = best_time(step, args.repeats)
        print(f"scan  {name:38s} fwd+bwd {seconds:6.3f} s   max |err| {error:.1e}")

    items = torch.randint(1, args.items + 1, (args.batch, args.length))
    for name in ("mamba4rec", "hymoerec"):
        model = build_model(name, {}, args.items)

        def model_step(model: SequentialModel = model) -> None:
            out = model(items)
            logits = out.hidden.flatten(0, 1) @ model.item_weights().T
            loss = F.cross_entropy(logits, items.flatten()) + out.aux_loss
            loss.backward()

        seconds = best_time(model_step, args.repeats)
        print(f"model {name:38s} fwd+bwd+CE {seconds:6.3f} s per batch of {args.batch}")


if __name__ == "__main__":
    main()

"""Where one training step's time goes, float32 against bfloat16.

    python benchmarks/step_profile.py --model hymoerec --steps 6
    python benchmarks/step_profile.py --model hymoerec --eval  # one full validation ranking
    python benchmarks/step_profile.py --dropout  # F.dropout against layers.Dropout
    python benchmarks/step_profile.py --ffn  # the point-wise FFN, GELU and dropout fused or not
    python benchmarks/step_profile.py --conv  # the mixer's convolution and SiLU, fused or not
    python benchmarks/step_profile.py --softmax  # the chunked loss, its softmax native or not
    python benchmarks/step_profile.py --mixer  # the Mamba layer, its mixer in one kernel or not
    python benchmarks/step_profile.py --experts  # the routed experts, rows gathered two ways
    python benchmarks/step_profile.py --loss-kernel  # whole steps, bf16 loss kernel or not

Builds both trainers of ``benchmarks/train_speed.py`` (same seed, same batches), warms
each up on one batch, then profiles ``--steps`` batches of each precision under
``torch.profiler`` and prints, per precision, the wall seconds per step split into
regions (model forward, loss, backward, optimizer) and the operators with the most self
CPU time. The regions are ``record_function`` labels set here, so the library is timed
as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from train_speed import PRECISIONS, build, sides

REGIONS = ("forward", "loss", "backward", "optimizer")


def profiled_step(trainer, batch) -> None:
    """``Trainer.train_batch`` with each region labelled."""
    from hymoerec.training.loop import with_targets
    from hymoerec.training.schedule import fusion_scale
    from hymoerec.training.validation import numerics

    config, device, model = trainer.config, trainer.device, trainer.model
    model.train()
    scale = fusion_scale(model, trainer.step)
    items, targets = batch.items.to(device), batch.targets.to(device)
    with numerics(config, device):
        with record_function("forward"):
            output = model(items, alpha_scale=scale)
        with record_function("loss"):
            hidden, targets = with_targets(output.hidden, targets)
            ce = trainer.loss_fn(hidden, model.item_weights(), targets)
    loss = batch.target_weight * ce + batch.sequence_weight * output.aux_loss
    trainer.optimizer.zero_grad(set_to_none=True)
    with record_function("backward"):
        loss.backward()
    with record_function("optimizer"):
        trainer.optimizer.step()
        trainer.schedule.step()
    trainer.step += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="hymoerec")
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--set", action="append", default=[], help="TrainConfig KEY=VALUE")
    parser.add_argument("--fast", action="append", default=[], help="KEY=VALUE of bf16 only")
    parser.add_argument("--eval", action="store_true", help="profile one validation ranking")
    parser.add_argument("--dropout", action="store_true", help="time the two dropout masks")
    parser.add_argument("--ffn", action="store_true", help="time the FFN with its GELU fused")
    parser.add_argument("--experts", action="store_true", help="time the routed experts' gathers")
    parser.add_argument("--conv", action="store_true", help="time the mixer's convolution")
    parser.add_argument("--softmax", action="store_true", help="time the loss's softmax kernel")
    parser.add_argument("--mixer", action="store_true", help="time the Mamba mixer's kernel")
    parser.add_argument("--loss-kernel", action="store_true", help="steps, bf16 loss kernel or not")
    args = parser.parse_args()
    if args.conv:
        conv_speed()
        return
    if args.softmax:
        softmax_speed()
        return
    if args.mixer:
        mixer_speed()
        return
    if args.dropout:
        dropout_speed()
        return
    if args.ffn:
        ffn_speed()
        return
    if args.experts:
        experts_speed()
        return
    from hymoerec.training.validation import validate

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    extra = sides(args.set, args.fast)
    runs = {
        name: build(args.model, args.dataset, args.data_dir, extra[name], bf16)
        for name, bf16 in PRECISIONS.items()
    }
    if args.loss_kernel:
        loss_kernel_steps(runs, 10 * args.steps)
        return
    if args.eval:
        for name, (trainer, data, config, max_len) in runs.items():
            validate(trainer.model, data, "valid", max_len, config, trainer.device)  # warm-up
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                begin = time.perf_counter()
                validate(trainer.model, data, "valid", max_len, config, trainer.device)
                seconds = time.perf_counter() - begin
            print(f"\n{name}: {seconds:.3f} s for {data.num_users} users")
            report(prof, 1, args.top)
        return
    # the same batches for both: the longest ones of the epoch's first 4 * steps
    first = runs["float32"][0]
    stream = first.sampler.epoch(first.rng)
    batches = [next(stream) for _ in range(4 * args.steps + 1)]
    warm, batches = batches[0], sorted(batches[1:], key=lambda b: -b.items.numel())
    batches = batches[: args.steps]
    shape = tuple(batches[0].items.shape)
    print(f"{args.model}, {args.steps} steps per precision, longest batch {shape}")
    for name, (trainer, *_rest) in runs.items():
        profiled_step(trainer, warm)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            begin = time.perf_counter()
            for batch in batches:
                profiled_step(trainer, batch)
            seconds = (time.perf_counter() - begin) / len(batches)
        events = prof.key_averages()
        regions = {e.key: e.cpu_time_total / 1e6 / len(batches) for e in events if e.key in REGIONS}
        split = ", ".join(f"{key} {regions.get(key, 0):.3f}" for key in REGIONS)
        print(f"\n{name}: {seconds:.3f} s per step ({split})")
        report(prof, len(batches), args.top)


def loss_kernel_steps(runs: dict, steps: int) -> None:
    """Whole training steps over the epoch's first ``steps`` batches, each batch taken by
    float32, bf16 with the chunked bf16 products for its loss, and bf16 with the loss's
    kernel (``ce_kernel``) in turn: seconds in all and per step (median) of each."""
    import statistics

    from hymoerec.training import ce_kernel

    (f32, *_rest), (bf16, *_more) = runs["float32"], runs["bf16"]
    stream = f32.sampler.epoch(f32.rng)
    batches = [next(stream) for _ in range(steps + 1)]
    profiled_step(f32, batches[0])
    profiled_step(bf16, batches[0])
    variants = {
        "float32": (f32, False),
        "bf16 products": (bf16, True),
        "bf16 kernel": (bf16, False),
    }
    times: dict[str, list[float]] = defaultdict(list)
    for batch in batches[1:]:
        for name, (trainer, products) in variants.items():
            with ce_kernel.off() if products else contextlib.nullcontext():
                begin = time.perf_counter()
                profiled_step(trainer, batch)
                times[name].append(time.perf_counter() - begin)
    print(f"{steps} steps each, alternating batch by batch")
    for name, values in times.items():
        ratio = sum(times["float32"]) / sum(values)
        median = statistics.median(values)
        print(f"  {name:14s} {sum(values):6.2f} s, {median:.3f} s a step  {ratio:.2f}x float32")


def dropout_speed(shape: tuple[int, ...] = (32, 200, 256), p: float = 0.2) -> None:
    """Median ms of one dropout, forward and backward, on an FFN activation of a batch:
    ``F.dropout`` (``bernoulli_`` mask), a ``torch.rand`` draw compared with p (the
    previous ``layers.Dropout``) and ``layers.Dropout`` (16-bit integers cut from 64-bit
    draws), float32 and bf16, alternating, 21 rounds."""
    import statistics

    import torch.nn.functional as F

    from hymoerec.models.layers import Dropout

    ours = Dropout(p)

    def uniform_draw(x: torch.Tensor) -> torch.Tensor:
        keep = torch.rand(x.shape) >= p
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))

    variants = {
        "F.dropout": lambda x: F.dropout(x, p, True),
        "torch.rand mask": uniform_draw,
        "layers.Dropout": ours,
    }
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(shape, dtype=dtype, requires_grad=True)
        grad = torch.ones(shape, dtype=dtype)
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(21):
            for name, run in variants.items():
                begin = time.perf_counter()
                run(x).backward(grad)
                times[name].append(1e3 * (time.perf_counter() - begin))
        medians = {name: statistics.median(values) for name, values in times.items()}
        base = medians["F.dropout"]
        for name, value in medians.items():
            print(f"{dtype!s:15s} {name:16s} {value:6.2f} ms  {base / value:.2f}x {shape}")


def ffn_speed(tokens: int = 6400, d_model: int = 64, inner: int = 256, p: float = 0.2) -> None:
    """Median ms of one point-wise FFN, forward and backward, on a (32, 200) batch's
    tokens: GELU and dropout unfused (``layers.Dropout``), fused (``ffn_kernel``), and
    neither (the two linear layers alone, the floor); float32 and bf16 autocast,
    alternating, 21 rounds."""
    import statistics

    from hymoerec import kernels
    from hymoerec.models.layers import PointWiseFFN

    torch.manual_seed(0)
    ffn = PointWiseFFN(d_model, inner, p)
    x = torch.randn(tokens, d_model, requires_grad=True)
    variants = {
        "unfused": lambda: ffn(x),
        "fused": lambda: ffn(x),
        "linear layers alone": lambda: ffn.w_2(ffn.w_1(x)),
    }
    print(f"point-wise FFN {d_model} -> {inner} -> {d_model} on {tokens} tokens, p = {p}")
    for bf16 in (False, True):
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(21):
            for name, run in variants.items():
                with (
                    kernels.use(name == "fused"),
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
                ):
                    begin = time.perf_counter()
                    run().float().sum().backward()
                    times[name].append(1e3 * (time.perf_counter() - begin))
        medians = {name: statistics.median(values) for name, values in times.items()}
        base = medians["unfused"]
        for name, value in medians.items():
            precision = "bf16" if bf16 else "float32"
            print(
                f"{precision:8s} {name:20s} {value:6.2f} ms  {base / value:.2f}x ({tokens} tokens)"
            )


def experts_speed(tokens: int = 6400, d_model: int = 64, inner: int = 256) -> None:
    """Median ms of HyMoERec's routed experts (E = 4, K = 2, dropout 0.2), forward and
    backward, on a (32, 200) batch's tokens: each expert's rows and gates gathered by
    indexing (``flat[token]``, whose gradient is an accumulating ``index_put_``) against
    ``index_select`` (whose gradient is an ``index_add_``), as ``RoutedExperts`` does;
    float32 and bf16 autocast, alternating, 21 rounds."""
    import statistics

    from hymoerec import kernels
    from hymoerec.models.layers import padded_rows
    from hymoerec.models.moe import GROUP_ROWS, RoutedExperts
    from hymoerec.training.loop import with_targets

    def indexed(self, x, gates, experts):  # RoutedExperts.forward before index_select
        flat = x.reshape(-1, x.size(-1))
        gates = gates.reshape(-1, gates.size(-1)).to(x.dtype)
        experts = experts.reshape(-1, experts.size(-1))
        out = torch.zeros_like(flat)
        for e in experts.unique().tolist():
            token, slot = torch.where(experts == e)
            y = self.experts[e](padded_rows(flat[token], GROUP_ROWS))[: token.numel()]
            out.index_add_(0, token, (y * gates[token, slot, None]).to(out.dtype))
        return out.view_as(x)

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    layer = RoutedExperts(d_model, inner, 0.2, 4)
    x = torch.randn(tokens, d_model, generator=g, requires_grad=True)
    logits = torch.randn(tokens, 4, generator=g, requires_grad=True)
    variants = {"indexing": indexed, "index_select": RoutedExperts.forward}
    print(f"routed experts, {tokens} tokens, 4 experts, top 2, d_model {d_model}, inner {inner}")
    for bf16 in (False, True):
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(21):
            for name, forward in variants.items():
                with kernels.use(True), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                    begin = time.perf_counter()
                    top, experts = logits.topk(2, dim=-1)
                    forward(layer, x, top.softmax(-1), experts).float().sum().backward()
                    times[name].append(1e3 * (time.perf_counter() - begin))
        medians = {name: statistics.median(values[1:]) for name, values in times.items()}
        for name, value in medians.items():
            precision = "bf16" if bf16 else "float32"
            print(f"{precision:8s} {name:13s} {value:6.2f} ms  {medians['indexing'] / value:.2f}x")
    # the loss's gather of the positions with a target (7% of a batch is padding)
    hidden = torch.randn(32, 200, d_model, generator=g).bfloat16().requires_grad_()
    targets = torch.randint(1, 3417, (32, 200), generator=g)
    targets[torch.rand(32, 200, generator=g) < 0.07] = 0
    gathers = {
        "boolean mask": lambda: hidden[targets != 0],
        "index_select": lambda: with_targets(hidden, targets)[0],
    }
    gather_times: dict[str, list[float]] = defaultdict(list)
    for _ in range(51):
        for name, gather in gathers.items():
            begin = time.perf_counter()
            gather().float().sum().backward()
            gather_times[name].append(1e3 * (time.perf_counter() - begin))
    base = statistics.median(gather_times["boolean mask"][1:])
    print("the loss's rows with a target, (32, 200, 64) bf16, forward + backward:")
    for name, values in gather_times.items():
        value = statistics.median(values[1:])
        print(f"  {name:13s} {value:6.3f} ms  {base / value:.2f}x")


def softmax_speed(targets: int = 6400, items: int = 3416, dim: int = 64) -> None:
    """Median ms of the chunked CE, forward and backward, on a (32, 200) ML-1M batch's
    targets: torch's softmax and the C kernel (``softmax_kernel``); float32 and bf16
    autocast, alternating, 21 rounds."""
    import statistics

    from hymoerec import kernels
    from hymoerec.training.loss import chunked_softmax_ce

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(targets, dim, generator=g, requires_grad=True)
    weights = (0.3 * torch.randn(items + 1, dim, generator=g)).requires_grad_()
    labels = torch.randint(1, items + 1, (targets,), generator=g)
    print(f"chunked CE, {targets} targets x {items} items, D = {dim}")
    for bf16 in (False, True):
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(21):
            for name in ("torch softmax", "C kernel"):
                with (
                    kernels.use(name == "C kernel"),
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
                ):
                    begin = time.perf_counter()
                    chunked_softmax_ce(hidden, weights, labels).backward()
                    times[name].append(1e3 * (time.perf_counter() - begin))
        medians = {name: statistics.median(values[1:]) for name, values in times.items()}
        base = medians["torch softmax"]
        for name, value in medians.items():
            precision = "bf16" if bf16 else "float32"
            print(f"{precision:8s} {name:14s} {value:6.2f} ms  {base / value:.2f}x")


def mixer_speed(shape: tuple[int, int, int] = (32, 200, 64)) -> None:
    """Median ms of one Mamba layer (HyMoERec's: d_state 32, expand 2), forward and
    backward, on a (32, 200) batch: the scan's C kernel with the step sizes' softplus,
    the D skip and the SiLU gate as PyTorch operators around it, against all of them in
    the one mixer kernel (``scan_kernel.NativeMixer``); float32 and bf16 autocast,
    alternating, 21 rounds."""
    import statistics

    from hymoerec import kernels
    from hymoerec.models import scan
    from hymoerec.models.mamba import Mamba

    torch.manual_seed(0)
    layer = Mamba(shape[-1], 32, 4, 2)
    x = torch.randn(*shape, requires_grad=True)
    fused = scan.training_mixer
    print(f"Mamba layer, input {tuple(shape)}, d_state 32, d_inner {layer.d_inner}")
    for bf16 in (False, True):
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(21):
            for name in ("scan kernel + operators", "one mixer kernel"):
                scan.training_mixer = fused if name == "one mixer kernel" else lambda *a: None
                with (
                    scan.use(True),
                    kernels.use(True),
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
                ):
                    begin = time.perf_counter()
                    layer(x).float().sum().backward()
                    times[name].append(1e3 * (time.perf_counter() - begin))
        scan.training_mixer = fused
        medians = {name: statistics.median(values[1:]) for name, values in times.items()}
        base = medians["scan kernel + operators"]
        for name, value in medians.items():
            precision = "bf16" if bf16 else "float32"
            print(f"{precision:8s} {name:24s} {value:6.2f} ms  {base / value:.2f}x")


def conv_speed(shape: tuple[int, int, int] = (32, 200, 128), width: int = 4) -> None:
    """Median ms of the mixer's causal depthwise convolution and SiLU, forward and
    backward, on u as ``in_proj`` leaves it (half of a (B, L, 2 Di) output): unfused and
    as the C kernel (``conv_kernel``); float32 and bf16 autocast, alternating, 21 rounds."""
    import statistics

    from hymoerec import kernels
    from hymoerec.models.conv_kernel import conv_silu

    torch.manual_seed(0)
    batch, length, d_inner = shape
    conv = torch.nn.Conv1d(d_inner, d_inner, width, groups=d_inner, padding=width - 1)
    projection = torch.randn(batch, length, 2 * d_inner, requires_grad=True)
    grad = torch.randn(shape)
    print(f"convolution + SiLU on u of shape {shape}, width {width}")
    for bf16 in (False, True):
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(21):
            for name in ("unfused", "fused"):
                with (
                    kernels.use(name == "fused"),
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
                ):
                    begin = time.perf_counter()
                    u = projection[..., :d_inner]
                    conv_silu(u.to(torch.bfloat16) if bf16 else u, conv).backward(grad)
                    times[name].append(1e3 * (time.perf_counter() - begin))
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, value in medians.items():
            precision = "bf16" if bf16 else "float32"
            print(f"{precision:8s} {name:8s} {value:6.2f} ms  {medians['unfused'] / value:.2f}x")


def report(prof: profile, count: int, top: int) -> None:
    """The ``top`` operators by self CPU seconds per step (of ``count`` steps)."""
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.key not in REGIONS:
            totals[event.key] += event.self_cpu_time_total / 1e6 / count
    whole = sum(totals.values())
    for key, value in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {key:48s} {value:7.3f} s  {100 * value / whole:5.1f}%")


if __name__ == "__main__":
    main()

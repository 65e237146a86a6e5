"""Mamba selective state-space mixer (Gu & Dao, 2023) in pure PyTorch.

Parameter names and shapes are those of ``mamba_ssm.modules.mamba_simple.Mamba``
(in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj), so a state dict loads in both.
On CUDA the scan uses ``mamba_ssm``'s fused kernel when that package is importable.

The scan ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``, ``y_t = C_t . h_t`` is a
custom autograd Function looping over time on (B, d_inner, d_state) slices with a
hand-written backward. ``benchmarks/bench_scan.py`` compares it with an autograd loop,
chunked (log-space and recompute) scans and the compiled chunks of
``hymoerec.models.scan``, which CPU runs use with ``train.compile_scan``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hymoerec.models import scan
from hymoerec.models.conv_kernel import conv_silu


def _load_cuda_scan() -> Callable[..., Tensor] | None:
    """mamba_ssm's fused selective-scan kernel (CUDA only), if installed."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


_cuda_scan = _load_cuda_scan()


class SelectiveScan(torch.autograd.Function):
    """y = scan(u, delta, A, B, C) with u, delta: (B, L, Di); A: (Di, N); B, C: (B, L, N).

    Stores every state h_t, (L, B, Di, N), for the backward pass when a gradient is
    needed (420 MB at B=128, L=200, Di=128, N=32); recomputing them from checkpoints
    was slower in the benchmark.
    """

    @staticmethod
    def forward(ctx: Any, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        batch, length, d_inner = u.shape
        keep = any(ctx.needs_input_grad)
        states = u.new_empty(length if keep else 1, batch, d_inner, A.size(1))
        h = u.new_zeros(batch, d_inner, A.size(1))  # (B, Di, N)
        du = delta * u  # (B, L, Di)
        y = u.new_empty(batch, length, d_inner)
        # float32 throughout: under a bf16 autocast the bmm would otherwise round y_t
        with torch.autocast(u.device.type, enabled=False):
            for t in range(length):
                decay = torch.exp(delta[:, t, :, None] * A)  # (B, Di, N)
                h = torch.mul(decay, h, out=states[t if keep else 0])
                h.addcmul_(du[:, t, :, None], B[:, t, None, :])
                y[:, t] = torch.bmm(h, C[:, t, :, None]).squeeze(-1)  # (B, Di)
        if keep:
            ctx.save_for_backward(u, delta, A, B, C, states)
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor, ...]:
        u, delta, A, B, C, states = ctx.saved_tensors
        du = delta * u
        grad_h = torch.zeros_like(states[0])  # dLoss/dh_t, carried backwards in time
        grad_du, grad_delta = torch.empty_like(u), torch.empty_like(delta)
        grad_B, grad_C = torch.empty_like(B), torch.empty_like(C)
        grad_A_terms = torch.zeros_like(states[0])  # summed over the batch at the end
        for t in range(u.size(1) - 1, -1, -1):
            grad_h.addcmul_(grad_y[:, t, :, None], C[:, t, None, :])  # (B, Di, N)
            grad_C[:, t] = torch.bmm(grad_y[:, t, None, :], states[t]).squeeze(1)
            grad_B[:, t] = torch.bmm(du[:, t, None, :], grad_h).squeeze(1)
            grad_du[:, t] = torch.bmm(grad_h, B[:, t, :, None]).squeeze(-1)
            decay = torch.exp(delta[:, t, :, None] * A)  # (B, Di, N)
            if t > 0:  # h_{-1} = 0, so the decay at t = 0 gets no gradient
                grad_log_decay = grad_h * states[t - 1] * decay  # d/d(delta_t A)
                grad_delta[:, t] = (grad_log_decay * A).sum(-1)
                grad_A_terms.addcmul_(grad_log_decay, delta[:, t, :, None])
            else:
                grad_delta[:, t] = 0.0
            grad_h.mul_(decay)
        grad_delta.addcmul_(grad_du, u)
        return grad_du * delta, grad_delta, grad_A_terms.sum(0), grad_B, grad_C


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """y_t = C_t . h_t with h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, h_{-1} = 0.

    u, delta: (B, L, Di); A: (Di, N), negative; B, C: (B, L, N). Returns (B, L, Di).
    """
    if u.is_cuda and _cuda_scan is not None:
        y = _cuda_scan(
            u.transpose(1, 2).contiguous(),
            delta.transpose(1, 2).contiguous(),
            A.contiguous(),
            B.transpose(1, 2).contiguous(),
            C.transpose(1, 2).contiguous(),
        )
        return y.transpose(1, 2)  # (B, L, Di)
    if scan.active(u.device):
        return scan.training_scan(u, delta, A, B, C)
    out: Tensor = SelectiveScan.apply(u, delta, A, B, C)
    return out


@torch.no_grad()
def last_state_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C_last: Tensor,
    last: Tensor,
    delta_bias: Tensor | None = None,
) -> Tensor:
    """The scan's output at one position per row (inference only).

    The same recurrence as ``SelectiveScan``, but no output is formed at the other
    positions, no state is stored, and the loop stops at the latest position asked for.
    u, delta: (B, L, Di); A: (Di, N); B: (B, L, N); C_last: (B, N); last: (B,) positions.
    u, B and C_last may be bfloat16 (a bf16 autocast); the scan runs in float32. With
    ``delta_bias`` (Di,), ``delta`` is taken before that bias and the softplus, which are
    applied in float32 (as ``Mamba.step_size`` does). Returns y at ``last``: (B, Di),
    float32.
    """
    if scan.active(u.device):  # reads u, delta and B in place
        return scan.last_output(u, delta, A, B, C_last, last, delta_bias=delta_bias)
    if delta_bias is not None:
        delta = F.softplus(delta.float() + delta_bias.float())
    return _last_state_loop(u.float(), delta.float(), A, B.float(), C_last.float(), last)


def _last_state_loop(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C_last: Tensor, last: Tensor
) -> Tensor:
    batch, _, d_inner = u.shape
    h = u.new_zeros(batch, d_inner, A.size(1))  # (B, Di, N)
    y = u.new_empty(batch, d_inner)
    du = delta * u  # (B, L, Di)
    decay = torch.empty_like(h)
    ends = last.tolist()
    with torch.autocast(u.device.type, enabled=False):  # float32, as in SelectiveScan
        for t in range(max(ends) + 1):
            torch.exp(torch.mul(delta[:, t, :, None], A, out=decay), out=decay)  # (B, Di, N)
            h.mul_(decay).addcmul_(du[:, t, :, None], B[:, t, None, :])
            rows = [row for row, end in enumerate(ends) if end == t]
            if rows:
                index = torch.tensor(rows, device=u.device)
                y[index] = torch.bmm(h[index], C_last[index, :, None]).squeeze(-1)
    return y


def softplus_step(projected: Tensor, bias: Tensor) -> Tensor:
    """delta = softplus(projected + bias) in float32 (``Mamba.step_size``)."""
    return F.softplus(projected.float() + bias.float())


class Mamba(nn.Module):
    """Selective SSM mixer: (B, L, d_model) -> (B, L, d_model), causal."""

    def __init__(self, d_model: int, d_state: int = 32, d_conv: int = 4, expand: int = 2) -> None:
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)  # mamba_ssm's dt_rank="auto"
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        """mamba_ssm's initialisation of the SSM-specific parameters."""
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(
            torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=1e-4)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log.copy_(torch.log(A))  # S4D-real: A = -(1, 2, ..., N)
        self.D.fill_(1.0)

    def step_size(self, dt: Tensor) -> Tensor:
        """delta = softplus(dt_proj(dt)), (B, L, Di), with the bias and softplus in
        float32 as mamba_ssm's kernels take them (``delta_bias``): under a bf16 autocast the
        bias, -7 to -2 at init, would otherwise be rounded to steps of 1/64 to 1/32, a
        change of up to 1.6% in delta ~ exp(bias) at every position."""
        return softplus_step(F.linear(dt, self.dt_proj.weight), self.dt_proj.bias)

    def forward(self, x: Tensor, last: Tensor | None = None) -> Tensor:
        """(B, L, d_model) -> (B, L, d_model); with ``last`` ((B,) positions), only the
        output at those positions: (B, 1, d_model), computed by ``last_state_scan``."""
        if last is None:
            u, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, Di) each
        else:  # the gate z is needed at the last positions only
            w_u, w_z = self.in_proj.weight.chunk(2, dim=0)
            rows = torch.arange(x.size(0), device=x.device)
            u, z = F.linear(x, w_u), F.linear(x[rows, last][:, None], w_z)  # z: (B, 1, Di)
        u = conv_silu(u, self.conv1d)  # (B, L, Di), causal: left padding only
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        A = -torch.exp(self.A_log.float())  # (Di, N)
        # the step size before step_size's bias and softplus, which the kernels apply
        projected, bias = F.linear(dt, self.dt_proj.weight), self.dt_proj.bias
        if last is not None:
            y = last_state_scan(u, projected, A, B, C[rows, last], last, delta_bias=bias)
            y = y.to(u.dtype)[:, None] + u[rows, last][:, None] * self.D  # (B, 1, Di)
            return self.out_proj(y * F.silu(z))  # (B, 1, D)
        fused = scan.training_mixer(u, projected, bias, A, B, C, self.D, z)
        if fused is not None:  # step sizes, scan, skip and gate in one C kernel
            return self.out_proj(fused)
        delta = softplus_step(projected, bias)  # (B, L, Di), float32, as step_size
        y = selective_scan(u.float(), delta, A, B.float(), C.float()).to(u.dtype)
        y = y + u * self.D  # (B, L, Di) skip connection
        return self.out_proj(y * F.silu(z))  # (B, L, D)

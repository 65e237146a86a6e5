import pytest
import torch
import torch.nn.functional as F

from hymoerec.models.mamba import Mamba, SelectiveScan, last_state_scan, selective_scan


def recurrence(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    """The selective SSM written step by step, one batch row and one channel at a time."""
    batch, length, d_inner = u.shape
    y = torch.zeros(batch, length, d_inner, dtype=torch.float64)
    for b in range(batch):
        for d in range(d_inner):
            h = torch.zeros(A.size(1), dtype=torch.float64)
            for t in range(length):
                h = torch.exp(delta[b, t, d] * A[d]) * h + delta[b, t, d] * B[b, t] * u[b, t, d]
                y[b, t, d] = (C[b, t] * h).sum()
    return y


def scan_inputs(
    batch: int = 2, length: int = 7, d_inner: int = 3, d_state: int = 4
) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(batch, length, d_inner, generator=g),
        F.softplus(torch.randn(batch, length, d_inner, generator=g)),
        -torch.rand(d_inner, d_state, generator=g) * 3 - 0.1,
        torch.randn(batch, length, d_state, generator=g),
        torch.randn(batch, length, d_state, generator=g),
    ]


def test_scan_matches_the_step_by_step_recurrence() -> None:
    inputs = scan_inputs()
    expected = recurrence(*[t.double() for t in inputs])
    torch.testing.assert_close(selective_scan(*inputs).double(), expected, atol=1e-5, rtol=1e-5)


def test_last_state_scan_matches_the_recurrence_at_each_rows_last_position() -> None:
    u, delta, A, B, C = scan_inputs(batch=3, length=9)
    last = torch.tensor([8, 0, 4])
    rows = torch.arange(3)
    expected = recurrence(u.double(), delta.double(), A.double(), B.double(), C.double())
    actual = last_state_scan(u, delta, A, B, C[rows, last], last)
    torch.testing.assert_close(actual.double(), expected[rows, last], atol=1e-5, rtol=1e-5)


def test_last_state_scan_ignores_what_follows_the_last_position() -> None:
    u, delta, A, B, C = scan_inputs(batch=2, length=9)
    last = torch.tensor([3, 5])
    rows = torch.arange(2)
    before = last_state_scan(u, delta, A, B, C[rows, last], last)
    u[:, 6:], delta[:, 6:], B[:, 6:] = 1e3, 50.0, -1e3  # huge values after every last position
    after = last_state_scan(u, delta, A, B, C[rows, last], last)
    torch.testing.assert_close(before, after)


def test_scan_gradients_match_the_recurrence() -> None:
    inputs = [t.double().requires_grad_() for t in scan_inputs()]
    assert torch.autograd.gradcheck(SelectiveScan.apply, inputs)
    weight = torch.randn(2, 7, 3, dtype=torch.float64)
    expected = torch.autograd.grad((recurrence(*inputs) * weight).sum(), inputs)
    actual = torch.autograd.grad((SelectiveScan.apply(*inputs) * weight).sum(), inputs)
    for name, a, e in zip(["u", "delta", "A", "B", "C"], actual, expected, strict=True):
        torch.testing.assert_close(a, e, msg=f"gradient of {name}")


def test_scan_without_gradients_gives_the_same_output() -> None:
    inputs = scan_inputs()
    with torch.no_grad():
        no_grad = selective_scan(*inputs)
    with_grad = selective_scan(*[t.requires_grad_() for t in inputs])
    torch.testing.assert_close(no_grad, with_grad.detach())


def test_mixer_uses_mamba_ssm_parameter_names_and_shapes() -> None:
    mixer = Mamba(d_model=32, d_state=8, d_conv=4, expand=2)
    shapes = {name: tuple(p.shape) for name, p in mixer.state_dict().items()}
    assert shapes == {
        "A_log": (64, 8),
        "D": (64,),
        "in_proj.weight": (128, 32),
        "conv1d.weight": (64, 1, 4),
        "conv1d.bias": (64,),
        "x_proj.weight": (2 + 16, 64),  # dt_rank = ceil(32 / 16) = 2
        "dt_proj.weight": (64, 2),
        "dt_proj.bias": (64,),
        "out_proj.weight": (32, 64),
    }
    torch.testing.assert_close(-torch.exp(mixer.A_log[0]), -torch.arange(1.0, 9.0))


@pytest.mark.parametrize("changed", [0, 3, 5])
def test_mixer_is_causal(changed: int) -> None:
    torch.manual_seed(0)
    mixer = Mamba(d_model=16, d_state=4)
    x = torch.randn(2, 6, 16)
    other = x.clone()
    other[:, changed] += 1.0
    y, y_other = mixer(x), mixer(other)
    torch.testing.assert_close(y[:, :changed], y_other[:, :changed])
    assert not torch.allclose(y[:, changed], y_other[:, changed])


def test_dropout_keeps_each_element_with_probability_one_minus_p_and_keeps_the_mean() -> None:
    from hymoerec.models.layers import Dropout

    torch.manual_seed(0)
    dropout = Dropout(0.3)
    x = torch.ones(1000, 1000, requires_grad=True)
    y = dropout(x)
    kept = y != 0
    share = kept.float().mean().item()
    assert abs(share - 0.7) < 5 * (0.3 * 0.7 / 1e6) ** 0.5  # five standard deviations
    keep = 1 - round(0.3 * 65536) / 65536  # the mask's probability, within 2^-17 of 0.7
    assert abs(keep - 0.7) <= 2**-17
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / keep))
    assert abs(y.mean().item() - 1.0) < 5 * (0.3 / 0.7 / 1e6) ** 0.5  # E[y] = x
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d y / d x = mask / (1 - p)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert dropout(x.detach().bfloat16()).dtype == torch.bfloat16
    dropout.eval()
    assert dropout(x) is x
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    torch.manual_seed(1)
    odd = Dropout(0.5).train()(torch.ones(3, 5, 7))  # a size that is no multiple of 4
    assert 0 < int(odd.ne(0).sum()) < 105
    torch.manual_seed(1)
    torch.testing.assert_close(Dropout(0.5).train()(torch.ones(3, 5, 7)), odd)  # seeded


def test_step_size_keeps_float32_precision_under_a_bf16_autocast() -> None:
    """delta ~ exp(bias) for the initial biases: rounding the bias to bf16 would move
    delta by up to 1.6%; only the small product dt_proj.weight @ dt may be rounded."""
    torch.manual_seed(0)
    mixer = Mamba(d_model=64, d_state=8)
    dt = torch.randn(4, 50, mixer.dt_rank) * 0.3
    exact = mixer.step_size(dt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = mixer.step_size(dt)
        rounded_bias = F.softplus(mixer.dt_proj(dt)).float()  # the bias added in bf16
    assert mixed.dtype == torch.float32
    error = ((mixed - exact).abs() / exact).max().item()
    assert error < 0.005, error
    assert ((rounded_bias - exact).abs() / exact).max().item() > 2 * error  # what it avoids

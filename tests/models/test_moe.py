import math

import pytest
import torch

from hymoerec.models import moe as moe_module
from hymoerec.models.layers import PointWiseFFN
from hymoerec.models.moe import HybridMoE, MoEConfig, balance_loss, top_k_gates, warmup_scale

D, INNER, E, K = 8, 16, 4, 2


def make_moe(fusion: str = "adaptive", **options: float) -> HybridMoE:
    torch.manual_seed(0)
    config = MoEConfig(num_experts=E, top_k=K, router_hidden=8, fusion=fusion, **options)
    return HybridMoE(D, INNER, 0.0, config).eval()


def dense_reference(moe: HybridMoE, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """sum_e gates_e f_e(x) computed by running every expert on every token."""
    outputs = torch.stack([expert(x) for expert in moe.routed.experts], dim=-2)  # (B,L,E,D)
    return (gates.unsqueeze(-1) * outputs).sum(dim=-2)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 5, D, generator=torch.Generator().manual_seed(1))


def test_alpha_scale_zero_gives_exactly_the_dense_branch(x: torch.Tensor) -> None:
    moe = make_moe()
    y, _ = moe(x, alpha_scale=0.0)
    assert torch.equal(y, moe.dense(x))


def test_adaptive_alpha_is_sigmoid_a_times_scale(x: torch.Tensor) -> None:
    moe = make_moe()
    with torch.no_grad():
        moe.alpha_logit.fill_(0.7)
    with torch.no_grad():
        assert float(moe.alpha(1.0)) == pytest.approx(1 / (1 + math.exp(-0.7)))
        assert float(moe.alpha(0.25)) == pytest.approx(0.25 / (1 + math.exp(-0.7)))
    y, stats = moe(x, alpha_scale=1.0)
    expected = moe.dense(x) + torch.sigmoid(torch.tensor(0.7)) * dense_reference(
        moe, x, stats.gates
    )
    torch.testing.assert_close(y, expected)


def test_alpha_logit_gets_a_gradient(x: torch.Tensor) -> None:
    moe = make_moe()
    y, _ = moe(x, alpha_scale=0.5)
    y.sum().backward()
    assert moe.alpha_logit.grad is not None and moe.alpha_logit.grad != 0


def test_fixed_fusion_ignores_the_warmup(x: torch.Tensor) -> None:
    moe = make_moe("fixed", fixed_alpha=0.3)
    y, stats = moe(x, alpha_scale=0.0)
    torch.testing.assert_close(y, moe.dense(x) + 0.3 * dense_reference(moe, x, stats.gates))
    assert not hasattr(moe, "alpha_logit")


def test_no_warmup_fusion_ignores_alpha_scale(x: torch.Tensor) -> None:
    moe = make_moe("no_warmup")
    y_start, _ = moe(x, alpha_scale=0.0)
    y_end, stats = moe(x, alpha_scale=1.0)
    torch.testing.assert_close(y_start, y_end)
    expected = moe.dense(x) + 0.5 * dense_reference(moe, x, stats.gates)  # sigmoid(0)
    torch.testing.assert_close(y_start, expected)


def test_dense_fusion_is_a_plain_point_wise_ffn(x: torch.Tensor) -> None:
    moe = make_moe("dense")
    plain = PointWiseFFN(D, INNER, 0.0)
    plain.load_state_dict(moe.dense.state_dict())
    y, stats = moe(x, alpha_scale=0.3)
    assert stats is None
    assert torch.equal(y, plain(x))
    assert not hasattr(moe, "router")


def test_sparse_fusion_has_no_shared_expert(x: torch.Tensor) -> None:
    moe = make_moe("sparse")
    assert moe.dense is None
    y, stats = moe(x, alpha_scale=0.0)
    torch.testing.assert_close(y, dense_reference(moe, x, stats.gates))


def test_top_k_gates_sum_to_one_on_exactly_k_experts(x: torch.Tensor) -> None:
    moe = make_moe()
    _, stats = moe(x)
    assert stats.probs.shape == stats.gates.shape == (3, 5, E)
    assert stats.probs.dtype == stats.gates.dtype == torch.float32
    torch.testing.assert_close(stats.gates.sum(-1), torch.ones(3, 5))
    torch.testing.assert_close(stats.probs.sum(-1), torch.ones(3, 5))
    assert torch.equal((stats.gates > 0).sum(-1), torch.full((3, 5), K))
    # the selected experts are those with the K largest router probabilities
    chosen = stats.gates > 0
    top = torch.zeros_like(chosen).scatter(-1, stats.probs.topk(K, dim=-1).indices, True)
    assert torch.equal(chosen, top)


def test_gates_are_softmax_over_the_kept_logits_only() -> None:
    logits = torch.tensor([[2.0, 0.0, 1.0, -5.0]])
    gates, experts = top_k_gates(logits, 2)
    assert experts.tolist() == [[0, 2]]
    torch.testing.assert_close(gates, torch.tensor([[2.0, 1.0]]).softmax(-1))


def test_routed_output_equals_dense_computation_of_every_expert(x: torch.Tensor) -> None:
    moe = make_moe()
    gates, experts = top_k_gates(moe.router(x), K)
    full_gates = torch.zeros(3, 5, E).scatter(-1, experts, gates)
    torch.testing.assert_close(moe.routed(x, gates, experts), dense_reference(moe, x, full_gates))


def test_expert_groups_are_padded_without_changing_any_gradient(
    x: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    moe = make_moe()
    x = x.clone().requires_grad_()
    gates, experts = top_k_gates(moe.router(x), K)
    gates = gates.detach().requires_grad_()
    full_gates = torch.zeros(3, 5, E).scatter(-1, experts, gates)
    params = [x, gates, *moe.routed.parameters()]
    want = torch.autograd.grad(dense_reference(moe, x, full_gates).square().sum(), params)
    rows: list[int] = []
    for expert in moe.routed.experts:
        expert.register_forward_pre_hook(lambda _, args: rows.append(args[0].size(0)))
    monkeypatch.setattr(moe_module, "GROUP_ROWS", 4)
    got = torch.autograd.grad(moe.routed(x, gates, experts).square().sum(), params)
    assert rows and all(r % 4 == 0 for r in rows)  # 15 tokens: every group padded
    assert sum(rows) > 15 * K
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_balance_loss_uniform_is_minus_log_e() -> None:
    probs = torch.full((2, 6, E), 1 / E)
    mask = torch.ones(2, 6, dtype=torch.bool)
    assert float(balance_loss(probs, mask)) == pytest.approx(-math.log(E))


def test_balance_loss_is_zero_when_one_expert_takes_all() -> None:
    probs = torch.zeros(2, 6, E)
    probs[..., 1] = 1.0
    assert float(balance_loss(probs, torch.ones(2, 6, dtype=torch.bool))) == 0.0


def test_balance_loss_is_averaged_per_sequence() -> None:
    probs = torch.zeros(2, 3, E)
    probs[0, :, 0] = 1.0  # sequence 0 collapsed: term 0
    probs[1] = 1 / E  # sequence 1 uniform: term -log E
    loss = balance_loss(probs, torch.ones(2, 3, dtype=torch.bool))
    assert float(loss) == pytest.approx(-math.log(E) / 2)


def test_balance_loss_ignores_padding() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(3, 6, E, generator=g).softmax(-1)
    mask = torch.tensor([[1] * 6, [1] * 2 + [0] * 4, [0] * 6], dtype=torch.bool)
    changed = probs.clone()
    changed[~mask] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    changed[2] = float("nan")  # a sequence without real items is skipped entirely
    assert torch.equal(balance_loss(probs, mask), balance_loss(changed, mask))
    gbar = [probs[0].mean(0), probs[1, :2].mean(0)]  # per sequence, real items only
    expected = sum((g * g.log()).sum() for g in gbar) / 2
    torch.testing.assert_close(balance_loss(probs, mask), expected)


def test_balance_loss_gives_every_expert_a_gradient() -> None:
    logits = torch.randn(2, 4, E, requires_grad=True)
    balance_loss(logits.softmax(-1), torch.ones(2, 4, dtype=torch.bool)).backward()
    assert logits.grad is not None and (logits.grad.abs().sum((0, 1)) > 0).all()


def test_warmup_scale() -> None:
    assert warmup_scale(0, 500) == 0.0
    assert warmup_scale(250, 500) == 0.5
    assert warmup_scale(10_000, 500) == 1.0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"top_k": 5, "num_experts": 4}, "top_k"),
        ({"num_experts": 0}, "num_experts"),
        ({"fusion": "mean"}, "fusion"),
        ({"balance_weight": -1.0}, "balance_weight"),
        ({"warmup_steps": 0}, "warmup_steps"),
        ({"router_hidden": 2.5}, "router_hidden"),
    ],
)
def test_moe_config_names_the_bad_field(options: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        MoEConfig(**options)

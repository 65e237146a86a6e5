from typing import Any

import pytest
import torch
import torch.nn.functional as F

from hymoerec.models import BERT4Rec, SequentialModel, balance_loss, build_model
from hymoerec.models.moe import HybridMoE
from tests.models.tiny import NUM_ITEMS, TINY, TINY_IDS, TINY_MOE, right_padded

LENGTHS = [8, 5, 1, 3]


def tiny_model(name: str, options: dict[str, Any]) -> SequentialModel:
    torch.manual_seed(0)
    return build_model(name, options, NUM_ITEMS).eval()


@pytest.mark.parametrize(("name", "options"), TINY, ids=TINY_IDS)
def test_padding_never_changes_real_positions(name: str, options: dict[str, Any]) -> None:
    model = tiny_model(name, options)
    items = right_padded(LENGTHS, 8)
    longer = F.pad(items, (0, 7))  # the same histories, 7 more padding columns
    lengths = torch.tensor(LENGTHS)
    with torch.no_grad():
        hidden, hidden_longer = model(items).hidden, model(longer).hidden[:, :8]
        real = items != 0
        torch.testing.assert_close(hidden[real], hidden_longer[real], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            model.score(items, lengths), model.score(longer, lengths), atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize(
    ("name", "options"),
    [c for c in TINY if c[0] != "bert4rec"],
    ids=[i for i in TINY_IDS if i != "bert4rec"],
)
def test_later_items_never_change_earlier_positions(name: str, options: dict[str, Any]) -> None:
    model = tiny_model(name, options)
    items = right_padded([8, 8], 8)
    changed = items.clone()
    changed[:, 4] = changed[:, 4] % NUM_ITEMS + 1
    with torch.no_grad():
        hidden, hidden_changed = model(items).hidden, model(changed).hidden
    torch.testing.assert_close(hidden[:, :4], hidden_changed[:, :4])
    assert not torch.allclose(hidden[:, 4], hidden_changed[:, 4])


def test_bert4rec_is_bidirectional_and_predicts_at_an_appended_mask() -> None:
    model = tiny_model("bert4rec", dict(TINY)["bert4rec"])
    assert isinstance(model, BERT4Rec) and model.bidirectional
    assert model.mask_token == NUM_ITEMS + 1
    assert model.item_weights().shape == (NUM_ITEMS + 1, 32)
    items = right_padded([5, 3], 6)
    with torch.no_grad():
        changed = items.clone()
        changed[0, 4] = changed[0, 4] % NUM_ITEMS + 1
        assert not torch.allclose(model(items).hidden[0, 0], model(changed).hidden[0, 0])
        expected = items.clone()
        expected[0, 5], expected[1, 3] = model.mask_token, model.mask_token
        hidden = model(expected).hidden
        torch.testing.assert_close(
            model.next_item_hidden(items, torch.tensor([5, 3])),
            torch.stack([hidden[0, 5], hidden[1, 3]]),
        )


def test_bert4rec_drops_the_oldest_item_when_the_mask_does_not_fit() -> None:
    options = {**dict(TINY)["bert4rec"], "max_len": 6}
    model = tiny_model("bert4rec", options)
    items = right_padded([6, 2], 6)
    with torch.no_grad():
        window = torch.cat([items[:1, 1:], torch.tensor([[model.mask_token]])], dim=1)
        expected = model(window).hidden[0, 5]
        actual = model.next_item_hidden(items, torch.tensor([6, 2]))
    torch.testing.assert_close(actual[0], expected)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("hymoerec", {"hidden_size": 16, "d_state": 4, "num_layers": 2, "moe": TINY_MOE}),
        ("sasrec", {"hidden_size": 16, "num_layers": 2, "max_len": 10, "ffn": "hymoe"}),
        ("bert4rec", {"hidden_size": 16, "num_layers": 2, "max_len": 10, "ffn": "hymoe"}),
    ],
)
def test_router_stats_and_aux_loss_per_moe_layer(name: str, options: dict[str, Any]) -> None:
    model = tiny_model(name, options)
    items = right_padded([6, 2, 4], 6)
    output = model(items, alpha_scale=0.5)
    experts = model.config.moe.num_experts
    assert len(output.router) == 2
    for stats in output.router:
        assert stats.probs.shape == stats.gates.shape == (3, 6, experts)
    expected = model.config.moe.balance_weight * sum(
        balance_loss(stats.probs, items != 0) for stats in output.router
    )
    torch.testing.assert_close(output.aux_loss, expected)
    output.aux_loss.backward()
    router = next(m for m in model.modules() if isinstance(m, HybridMoE)).router
    assert router.w_2.weight.grad is not None and router.w_2.weight.grad.abs().sum() > 0
    assert model.fusion_warmup_steps == 500
    assert model.fusion_alphas(0.5) == pytest.approx([0.25, 0.25])


def test_dense_models_have_no_router_and_zero_aux_loss() -> None:
    for name, options in TINY:
        if options.get("ffn") == "hymoe" or name == "hymoerec":
            continue
        output = tiny_model(name, options)(right_padded([3, 2], 4))
        assert output.router == () and float(output.aux_loss) == 0.0


def _train_masked(model: BERT4Rec, seqs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """BERT4Rec objective: mask real items, predict them."""
    real = seqs != 0
    masked = real & (torch.rand(seqs.shape, generator=generator) < 0.3)
    last = (real.sum(1) - 1)[:, None] == torch.arange(seqs.size(1))
    masked |= last & (torch.rand(seqs.size(0), 1, generator=generator) < 0.5)
    output = model(torch.where(masked, model.mask_token, seqs))
    return F.cross_entropy(output.hidden[masked] @ model.item_weights().T, seqs[masked])


@pytest.mark.parametrize(("name", "options"), TINY, ids=TINY_IDS)
def test_every_model_overfits_a_tiny_dataset(name: str, options: dict[str, Any]) -> None:
    model = tiny_model(name, options).train()
    g = torch.Generator().manual_seed(0)
    lengths = [6, 6, 6, 6, 5, 5, 4, 4]
    firsts = torch.randperm(NUM_ITEMS, generator=g)[:8] + 1  # distinct prefixes
    seqs = right_padded(lengths, 6, seed=1)
    seqs[:, 0] = firsts
    inputs, targets = seqs[:, :-1], seqs[:, 1:]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3 if model.bidirectional else 1e-2)
    for step in range(400 if model.bidirectional else 200):
        if model.bidirectional:
            assert isinstance(model, BERT4Rec)
            loss = _train_masked(model, seqs, g)
        else:
            output = model(inputs, alpha_scale=min(1.0, step / 50))
            real = targets != 0
            logits = output.hidden[real] @ model.item_weights().T
            loss = F.cross_entropy(logits, targets[real]) + output.aux_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        history_lengths = torch.tensor(lengths) - 1
        history = torch.where(torch.arange(6) < history_lengths[:, None], seqs, 0)
        predicted = model.score(history, history_lengths)[:, 1:].argmax(-1) + 1
        answers = seqs[torch.arange(8), history_lengths]
    assert (predicted == answers).float().mean() == 1.0


@pytest.mark.parametrize("name", ["hymoerec", "mamba4rec"])
def test_last_position_shortcut_equals_full_forward(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, {"hidden_size": 16, "num_layers": 2}, num_items=30).eval()
    items = torch.tensor([[3, 4, 5, 0, 0], [7, 8, 9, 10, 11], [2, 0, 0, 0, 0]])
    lengths = torch.tensor([3, 5, 1])
    full = model(items).hidden[torch.arange(3), lengths - 1]
    torch.testing.assert_close(model.next_item_hidden(items, lengths), full)


def test_narm_equals_its_equations_prefix_by_prefix() -> None:
    """Every position j against NARM written out for the prefix 0..j alone, gradients too,
    over more positions than one query chunk so that the per-chunk key cut is exercised."""
    torch.manual_seed(0)
    model = build_model("narm", {"hidden_size": 16, "embedding_size": 8}, NUM_ITEMS).eval()
    lengths = [70, 41, 1]
    items = right_padded(lengths, 70)

    def reference() -> torch.Tensor:
        states, _ = model.gru(model.item_embedding(items))  # (B, L, H)
        rows = []
        for b, n in enumerate(lengths):
            for j in range(n):
                h = states[b, : j + 1]  # the prefix's GRU states
                alpha = model.v_t(torch.sigmoid(model.a_1(h) + model.a_2(states[b, j])))
                c_local = (alpha * h).sum(0)
                rows.append(model.b(torch.cat([c_local, states[b, j]])))
        return torch.stack(rows)

    real = items != 0
    hidden = model(items).hidden[real]  # positions in the order of the loop above
    expected = reference()
    torch.testing.assert_close(hidden, expected, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(expected)
    ours = torch.autograd.grad((hidden * weights).sum(), [model.a_1.weight, model.gru.weight_hh_l0])
    theirs = torch.autograd.grad(
        (expected * weights).sum(), [model.a_1.weight, model.gru.weight_hh_l0]
    )
    for g, g_ref in zip(ours, theirs, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)
    lengths_t = torch.tensor(lengths)
    torch.testing.assert_close(
        model.next_item_hidden(items, lengths_t),
        model(items).hidden[torch.arange(3), lengths_t - 1],
    )


@pytest.mark.parametrize("name", ["hymoerec", "mamba4rec"])
def test_untied_embeddings_score_with_a_separate_output_table(name: str) -> None:
    options = {"hidden_size": 16, "d_state": 8, "dropout": 0.0}
    tied = tiny_model(name, options)
    untied = tiny_model(name, {**options, "tied_embeddings": False})
    assert tied.item_weights() is tied.item_embedding.weight  # type: ignore[union-attr]
    assert "output_embedding.weight" not in tied.state_dict()  # old checkpoints still load
    weights = untied.item_weights()
    assert weights is untied.output_embedding.weight  # type: ignore[union-attr]
    assert weights.shape == (NUM_ITEMS + 1, 16) and weights[0].abs().sum() == 0  # padding row
    items = right_padded(LENGTHS, 8)
    lengths = torch.tensor(LENGTHS)
    hidden = untied.next_item_hidden(items, lengths)
    torch.testing.assert_close(untied.score(items, lengths), hidden @ weights.T)
    assert not torch.equal(weights, untied.item_embedding.weight)  # type: ignore[union-attr]

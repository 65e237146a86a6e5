import numpy as np
import pytest

from hymoerec.config import ConfigError
from hymoerec.data.batches import windows
from hymoerec.data.interactions import Interactions
from hymoerec.data.protocol import ProtocolConfig, SequenceData, apply_protocol
from hymoerec.training.batches import LENGTH_MULTIPLE, BatchSampler


def data_with(sequences: list[list[int]]) -> SequenceData:
    users, items, times = [], [], []
    for u, seq in enumerate(sequences):
        users += [f"u{u}"] * len(seq)
        items += [str(i) for i in seq]
        times += list(range(len(seq)))
    log = Interactions(np.array(users), np.array(items), np.array(times))
    return apply_protocol(log, ProtocolConfig(user_core=3, item_core=1))


def test_windows_cover_every_position_once_counting_from_the_end() -> None:
    starts, ends, trained = windows(np.array([0, 10, 20]), np.array([7, 13, 20]), 3)
    assert (trained == starts).all()  # disjoint windows train every position they hold
    # the most recent window is full; only the oldest may be short; empty spans give none
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == [
        (4, 7),
        (1, 4),
        (0, 1),
        (10, 13),
    ]


def test_overlapping_windows_train_each_position_once_with_long_context() -> None:
    starts, ends, trained = windows(np.array([0, 10]), np.array([9, 12]), 4, stride=2)
    assert list(zip(starts.tolist(), ends.tolist(), trained.tolist(), strict=True)) == [
        (5, 9, 7),
        (3, 7, 5),
        (1, 5, 3),
        (0, 3, 1),
        (0, 1, 0),
        (10, 12, 10),
    ]


def test_overlapping_windows_give_each_target_its_context() -> None:
    # a training part of 20 items; with max_len 8 and stride 3 every target after the
    # first 5 positions sees at least 8 - 3 = 5 predecessors in its window
    data = data_with([list(range(1, 23))])
    sequence = data.sequence(0)[:20].tolist()  # internal ids of the training part
    index = {item: i for i, item in enumerate(sequence)}
    sampler = BatchSampler(data, max_len=8, batch_size=2, masked=False, stride=3)
    assert sampler.num_targets == 19
    seen = []
    for batch in sampler.epoch(np.random.default_rng(0)):
        for items, targets in zip(batch.items.tolist(), batch.targets.tolist(), strict=True):
            for position, target in enumerate(targets):
                if target:
                    assert target == sequence[index[items[position]] + 1]
                    assert position >= min(5, index[items[position]])
                    seen.append(index[target])
    assert sorted(seen) == list(range(1, 20))  # every target exactly once


def test_overlap_is_refused_for_masked_models() -> None:
    data = data_with([list(range(1, 23))])
    with pytest.raises(ConfigError, match="window_stride"):
        BatchSampler(data, max_len=8, batch_size=2, masked=True, stride=3)


def test_causal_batches_use_every_training_target_once() -> None:
    # ids 1..9 map to internal 1..9; training parts drop the last two items
    data = data_with([[1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 1, 2, 5, 4]])
    sampler = BatchSampler(data, max_len=3, batch_size=2, masked=False)
    assert sampler.num_targets == (9 - 3) + (5 - 3)
    pairs = []
    for batch in sampler.epoch(np.random.default_rng(0)):
        real = batch.targets != 0
        assert ((batch.items != 0) == real).all()  # every real input has a target
        pairs += list(zip(batch.items[real].tolist(), batch.targets[real].tolist(), strict=True))
    # user 0 training part 1..7: targets 2..7 each exactly once, from their predecessor
    expected = [(i, i + 1) for i in range(1, 7)] + [(3, 1), (1, 2)]
    assert sorted(pairs) == sorted(expected)


def test_masked_batches_predict_masked_items_only() -> None:
    data = data_with([list(range(1, 30)), list(range(5, 15))])
    sampler = BatchSampler(data, max_len=8, batch_size=16, masked=True)
    mask_token = data.num_items + 1
    for batch in sampler.epoch(np.random.default_rng(1), mask_token, mask_prob=0.3):
        masked = batch.items == mask_token
        assert (masked == (batch.targets != 0)).all()
        assert masked.any(dim=1).all()  # every window predicts something
        assert (batch.targets[masked] > 0).all()


def test_same_seed_same_batches() -> None:
    data = data_with([list(range(1, 30)), list(range(5, 15)), list(range(2, 9))])
    sampler = BatchSampler(data, max_len=4, batch_size=2, masked=False)
    first = [b.items.tolist() for b in sampler.epoch(np.random.default_rng(7))]
    second = [b.items.tolist() for b in sampler.epoch(np.random.default_rng(7))]
    assert first == second


@pytest.mark.parametrize("masked", [False, True])
def test_batch_lengths_are_rounded_up_to_a_multiple_up_to_max_len(masked: bool) -> None:
    data = data_with([list(range(1, n + 2)) for n in (3, 5, 9, 13, 20, 30, 31)])
    sampler = BatchSampler(data, max_len=12, batch_size=1, masked=masked)
    widths = []
    for batch in sampler.epoch(np.random.default_rng(0), mask_token=99, mask_prob=0.5):
        longest = int((batch.items != 0).sum(dim=1).max())
        width = batch.items.size(1)
        assert width == min(-(-longest // LENGTH_MULTIPLE) * LENGTH_MULTIPLE, 12)
        assert batch.targets.size(1) == width
        assert (batch.items[:, longest:] == 0).all() and (batch.targets[:, longest:] == 0).all()
        widths.append(width)
    assert set(widths) == {8, 12}  # a multiple of 8, or max_len

"""Right-padded windows cut from the CSR sequence array, vectorised over users."""

from __future__ import annotations

import numpy as np

from hymoerec.data.interactions import PAD


def right_padded(
    items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """The last ``max_len`` items of each ``items[starts[b]:ends[b]]``, right-padded.

    Returns (windows (B, max_len) int64, lengths (B,) int64). Position j < length holds
    the j-th kept item (oldest first); positions j >= length hold PAD.
    """
    lengths = np.minimum(ends - starts, max_len)
    first = ends - lengths
    columns = np.arange(max_len)
    index = first[:, None] + columns[None, :]  # (B, L)
    real = columns[None, :] < lengths[:, None]  # (B, L)
    windows = np.where(real, items[np.where(real, index, 0)], PAD).astype(np.int64)
    return windows, lengths.astype(np.int64)


def windows(
    starts: np.ndarray, ends: np.ndarray, max_len: int, stride: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each span ``[starts[u], ends[u])`` into windows of at most ``max_len``
    positions, counted back from the end: window b ends ``b * stride`` positions before
    the span's end (``stride`` 0 means ``max_len``: windows that do not overlap).

    Window b trains the positions ``[max(start, end_b - stride), end_b)``, so every
    position is trained in exactly one window, with at least ``max_len - stride`` earlier
    positions of its window before it (or every earlier position of its span).
    Returns the windows' (starts, ends, first trained positions); empty spans give no
    window.
    """
    stride = stride or max_len
    if not 1 <= stride <= max_len:
        raise ValueError(f"window stride {stride} must be between 1 and max_len={max_len}")
    lengths = np.maximum(ends - starts, 0)
    counts = -(-lengths // stride)  # ceil
    owner = np.repeat(np.arange(len(starts)), counts)
    back = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # 0 = last
    window_ends = ends[owner] - back * stride
    trained = np.maximum(starts[owner], window_ends - stride)
    window_starts = np.maximum(starts[owner], window_ends - max_len)
    return window_starts, window_ends, trained

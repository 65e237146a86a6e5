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


def windows(starts: np.ndarray, ends: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut each span ``[starts[u], ends[u])`` into consecutive windows of at most
    ``max_len`` positions, counted back from the end, so every position is in exactly
    one window. Returns the windows' (starts, ends); empty spans give no window.
    """
    lengths = np.maximum(ends - starts, 0)
    counts = -(-lengths // max_len)  # ceil
    owner = np.repeat(np.arange(len(starts)), counts)
    back = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # 0 = last
    window_ends = ends[owner] - back * max_len
    window_starts = np.maximum(starts[owner], window_ends - max_len)
    return window_starts, window_ends

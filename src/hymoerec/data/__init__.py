"""Data pipeline: raw files -> interactions -> the leave-one-out protocol -> cached arrays.

Pure NumPy; nothing here imports ``torch.nn``.
"""

"""Small numpy helpers shared by the generator: logistic functions, seeds, segments, draws.

Pure functions of arrays, no world and no randomness of their own (a caller
passes its uniforms in), so that every module of :mod:`shmi_spark.synth` can
use them and the draw order of a generator stays visible where it happens.
"""

from __future__ import annotations

import numpy as np

__all__ = ["logit", "sigmoid", "seed_sequence", "segment_starts", "position_in_segment", "inverse_cdf"]


def logit(p):
    """log(p / (1 - p)), with ``p`` clipped to [1e-9, 1 - 1e-9]."""
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def sigmoid(x):
    """The logistic function, inverse of :func:`logit`."""
    return 1.0 / (1.0 + np.exp(-x))


def seed_sequence(seed: int, *key: int) -> np.random.SeedSequence:
    """The seed sequence of one stream of the world: the world's seed and a spawn key.

    Each stream (world parameters, pilot passes, a chunk's spells, its episodes,
    its ONS rows) has its own key, so a chunk's numbers do not depend on which
    worker makes it or in which order.
    """
    return np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))


def segment_starts(lengths: np.ndarray) -> np.ndarray:
    """Index of the first element of each segment, for consecutive segments of the given lengths."""
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


def position_in_segment(lengths: np.ndarray) -> np.ndarray:
    """0..k-1 inside each segment of the given lengths (one element per element of the segments)."""
    total = int(lengths.sum())
    starts = np.repeat(segment_starts(lengths), lengths)
    return np.arange(total) - starts


def inverse_cdf(cumulative: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Category index of each uniform draw, given the cumulative probabilities of the categories.

    A uniform above the last cumulative value (rounding) falls in the last category.
    """
    return np.minimum(np.searchsorted(cumulative, uniforms, side="right"), len(cumulative) - 1)

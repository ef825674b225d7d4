"""Hamming locality-sensitive hashing (LSH) blocking from CLK bits alone.

All-pairs scoring (:func:`oda_fed.matching.dice_candidates`) compares every left CLK with every
right CLK in its popcount window: fine at 10k a side, not at 1M. Blocking here uses nothing but
the CLK bits, so it needs no extra secret and reveals nothing the coordinator does not already
hold: ``L`` independent *bands* each sample ``k`` bit positions (seeded); a record's *band key*
is its ``k`` sampled bits packed into a ``uint64``. Two records are a candidate pair when their
keys agree in at least one band.

Choosing ``k`` and ``L`` (:func:`auto_params`)
----------------------------------------------
Let CLKs have ``m`` bits, a fraction ``f`` of them set (the *fill*), and take a pair at the Dice
threshold ``t`` with both popcounts near the mean, ``pa = pb = f m``. Its intersection is
``t f m``, so its Hamming distance is ``d = pa + pb - 2 inter = 2 f m (1 - t)`` and one sampled
bit agrees with probability ``p = 1 - d / m = 1 - 2 f (1 - t)``. Sampled positions are distinct
and ``k << m``, so a band of ``k`` bits agrees with probability about ``p**k``, and with ``L``
independent bands the pair becomes a candidate with probability ``1 - (1 - p**k)**L``. For a
target recall ``R`` that gives ``L = ceil(log(1 - R) / log(1 - p**k))``. Pairs above the
threshold are closer, so they are found more often.

``k`` sets the block sizes. Two unrelated CLKs with the same fill agree on one bit with
probability ``q = f**2 + (1 - f)**2`` and on a band with ``q**k``; each left record meets about
``n_b q**k`` right records per band, ``n_b L q**k`` in all. Larger ``k`` means smaller blocks but
more bands (``p > q``, so the expected false candidates ``L q**k`` still fall with ``k``, while
the per-band cost of packing and sorting keys rises). :func:`auto_params` takes the smallest
``k`` whose random-pair collision ``q**k`` is at most ``collision`` (default ``2**-20``, about
one false candidate per band per million right records), then the ``L`` above. Real non-matches
share more bits than independent CLKs (same sex, postcode area, common names), so measured
reduction ratios are lower than the model says; ``benchmarks/blocking.py`` measures them.

Exact scoring (:func:`blocked_dice_candidates`) then applies the same integer Dice test as the
all-pairs kernels to the blocked pairs only, so its result is a subset of
:func:`~oda_fed.matching.dice_candidates` with identical scores and order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numba
import numpy as np

from oda_fed.matching import kernels
from oda_fed.matching.candidates import (
    Candidates,
    MatchingInputError,
    check_candidate_count,
    check_clks,
    threshold_ratio,
)

if TYPE_CHECKING:
    from oda_fed.matching.executor import Executor

_log = logging.getLogger(__name__)

# Band keys hold the k sampled bits in one uint64.
_MAX_BITS_PER_BAND = 64
# Pending pair keys beyond this many (and beyond the unique ones so far) are deduplicated: keeps
# memory near twice the output while sorting each key only a few times.
_COMPACT_KEYS = 1 << 22
# Bands whose keys are computed in one pass over the CLKs: 16 x 8 bytes per record.
_BANDS_AT_ONCE = 16
# Output keys per scoring task per round (512 KiB): passing pairs are few beside those scored.
_TASK_KEYS = 1 << 16

# More bands than this would take hours at scale: auto_params refuses rather than start.
MAX_AUTO_BANDS = 10_000

#: Called with (bands done, bands in all) after each band.
BandProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class LshParams:
    """Hamming LSH parameters: ``bands`` bands of ``bits_per_band`` sampled bit positions.

    Attributes
    ----------
    bands : int
        Number of independent bands ``L`` (at least 1).
    bits_per_band : int
        Bit positions ``k`` sampled per band, 1 to 64 (and at most the CLK length).
    seed : int
        Seed of the position sampler: the same seed gives the same bands.

    Examples
    --------
    >>> LshParams(bands=40, bits_per_band=20)
    LshParams(bands=40, bits_per_band=20, seed=0)
    """

    bands: int
    bits_per_band: int
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("bands", "bits_per_band", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise MatchingInputError(
                    f"LshParams.{name} must be a whole number, got {type(value).__name__}"
                )
        if self.bands < 1:
            raise MatchingInputError(f"LshParams.bands must be at least 1, got {self.bands}")
        if not 1 <= self.bits_per_band <= _MAX_BITS_PER_BAND:
            raise MatchingInputError(
                f"LshParams.bits_per_band must be 1 to {_MAX_BITS_PER_BAND}, "
                f"got {self.bits_per_band}"
            )
        if self.seed < 0:
            raise MatchingInputError(f"LshParams.seed must be at least 0, got {self.seed}")


@dataclass(frozen=True)
class BlockStats:
    """How much a blocking saved and what it kept.

    Attributes
    ----------
    pairs_total : int
        All cross pairs, ``len(a) * len(b)``.
    pairs_compared : int
        Pairs scored: each pair of every (kept) block, once per band it shares, so a pair that
        shares several bands counts several times.
    reduction_ratio : float
        ``1 - pairs_compared / pairs_total`` (0.0 when there are no pairs): a lower bound on the
        reduction ratio over distinct pairs, since repeats are counted.
    pair_completeness : float or None
        Share of the true pairs given that are among the blocked pairs; ``None`` without truth
        (or with an empty truth).
    bands, bits_per_band : int
        The parameters used.
    largest_block : int
        Pairs in the largest block of any band (skipped blocks included).
    blocks_skipped, pairs_skipped : int
        Blocks over ``max_block`` that were skipped, and the pairs they held (counted once per
        band, so a pair in two skipped blocks counts twice).
    candidates : int
        Distinct pairs at or above the threshold (0 from :func:`block_stats`, which scores
        nothing).
    """

    pairs_total: int
    pairs_compared: int
    reduction_ratio: float
    pair_completeness: float | None
    bands: int
    bits_per_band: int
    largest_block: int
    blocks_skipped: int = 0
    pairs_skipped: int = 0
    candidates: int = 0


@dataclass(frozen=True)
class _Join:
    """Sorted unique pair keys ``left << right_bits | right`` and what the join saw."""

    keys: np.ndarray
    right_bits: int
    compared: int
    largest_block: int
    blocks_skipped: int
    pairs_skipped: int
    truth_found: int | None
    truth_pairs: int | None


#: Above this many pairs (rows of one source times rows of the other), ``method="auto"`` blocks:
#: all pairs take a few seconds here on 2 cores, blocking about as long.
LSH_ABOVE_PAIRS = 2_500_000_000
#: LSH is tuned for at least this threshold. Below it the bands needed grow steeply (about 700
#: at 0.75, 2,000 at 0.7 for fill 0.4); pairs under it are still scored, but found less often.
LSH_MIN_THRESHOLD = 0.75


@dataclass(frozen=True)
class Blocking:
    """When a pair of sources is blocked with LSH, and with which parameters.

    Attributes
    ----------
    method : {"auto", "lsh", "none"}
        ``"auto"`` blocks pairs of sources with more than ``lsh_above`` pairs, ``"lsh"``
        always, ``"none"`` never (all pairs are scored).
    lsh_above : int
        The ``"auto"`` switch-over, in pairs.
    bands, bits_per_band : int or None
        Override :func:`auto_params`; either alone keeps the other automatic.
    target_recall : float
        For :func:`auto_params`: the chance that a pair at the design threshold shares a band.
    min_threshold : float
        Design threshold floor: LSH is tuned for ``max(threshold, min_threshold)``.
    max_block : int or None
        Skip blocks of more pairs than this (counted in :class:`BlockStats`).
    seed : int
        Seed of the sampled bit positions.

    Examples
    --------
    >>> Blocking().uses_lsh(10_000, 10_000), Blocking().uses_lsh(1_000_000, 1_000_000)
    (False, True)
    """

    method: Literal["auto", "lsh", "none"] = "auto"
    lsh_above: int = LSH_ABOVE_PAIRS
    bands: int | None = None
    bits_per_band: int | None = None
    target_recall: float = 0.99
    min_threshold: float = LSH_MIN_THRESHOLD
    max_block: int | None = None
    seed: int = 0

    def uses_lsh(self, n_a: int, n_b: int) -> bool:
        """Whether a pair of sources of ``n_a`` and ``n_b`` records is blocked."""
        if self.method == "auto":
            return n_a * n_b > self.lsh_above
        return self.method == "lsh"

    def params_for(self, a: np.ndarray, b: np.ndarray, *, threshold: float) -> LshParams:
        """The LSH parameters for these CLKs at ``threshold``."""
        if self.bands is not None and self.bits_per_band is not None:
            return LshParams(bands=self.bands, bits_per_band=self.bits_per_band, seed=self.seed)
        fill = min(max(estimate_fill(a, b), 1e-3), 1 - 1e-3)
        auto = auto_params(
            threshold=max(float(threshold), self.min_threshold),
            fill=fill,
            bits=64 * a.shape[1],
            target_recall=self.target_recall,
            bits_per_band=self.bits_per_band,
            seed=self.seed,
        )
        if self.bands is None:
            return auto
        return LshParams(bands=self.bands, bits_per_band=auto.bits_per_band, seed=self.seed)


def _check_fraction(value: float, *, name: str) -> float:
    numeric = int | float | np.integer | np.floating
    if isinstance(value, bool) or not isinstance(value, numeric):
        raise MatchingInputError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def auto_params(
    *,
    threshold: float,
    fill: float,
    bits: int,
    target_recall: float = 0.99,
    collision: float = 2.0**-20,
    bits_per_band: int | None = None,
    seed: int = 0,
) -> LshParams:
    """LSH parameters that find pairs at Dice ``threshold`` with probability ``target_recall``.

    See the module docstring for the derivation: ``p = 1 - 2 fill (1 - threshold)`` is the
    chance that one sampled bit agrees for a pair at the threshold, ``k`` is the smallest with
    ``(fill**2 + (1 - fill)**2)**k <= collision`` (capped at 64 and at ``bits``), and ``L`` the
    smallest with ``1 - (1 - p**k)**L >= target_recall``.

    Parameters
    ----------
    threshold : float
        Dice threshold in ``(0, 1]``.
    fill : float
        Mean share of set bits in the CLKs, in ``(0, 1)`` (mean popcount / bits).
    bits : int
        CLK length in bits.
    target_recall : float
        Wanted probability, in ``(0, 1)``, that a pair at the threshold shares a band.
    collision : float
        Wanted per-band collision probability, in ``(0, 1)``, of two unrelated CLKs.
    bits_per_band : int or None
        Use this ``k`` instead of the one ``collision`` gives; ``L`` still follows.
    seed : int
        Seed of the position sampler, passed to :class:`LshParams`.

    Returns
    -------
    LshParams

    Raises
    ------
    MatchingInputError
        On an argument out of range.

    Examples
    --------
    >>> auto_params(threshold=0.8, fill=0.4, bits=1024)
    LshParams(bands=212, bits_per_band=22, seed=0)
    """
    t = _check_fraction(threshold, name="threshold")
    f = _check_fraction(fill, name="fill")
    recall = _check_fraction(target_recall, name="target_recall")
    hit = _check_fraction(collision, name="collision")
    if not 0.0 < t <= 1.0:
        raise MatchingInputError(f"threshold must satisfy 0 < threshold <= 1, got {t!r}")
    if not 0.0 < f < 1.0:
        raise MatchingInputError(f"fill must satisfy 0 < fill < 1, got {f!r}")
    if not 0.0 < recall < 1.0:
        raise MatchingInputError(
            f"target_recall must satisfy 0 < target_recall < 1, got {recall!r}"
        )
    if not 0.0 < hit < 1.0:
        raise MatchingInputError(f"collision must satisfy 0 < collision < 1, got {hit!r}")
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or bits < 1:
        raise MatchingInputError(f"bits must be a whole number of at least 1, got {bits!r}")
    k_max = min(_MAX_BITS_PER_BAND, int(bits))
    q = f * f + (1.0 - f) * (1.0 - f)
    k = min(k_max, max(1, math.ceil(math.log(hit) / math.log(q))))
    if bits_per_band is not None:
        k = LshParams(bands=1, bits_per_band=bits_per_band).bits_per_band
    # Hamming fraction 2 f (1 - t) can pass 1 only for t < 1 - 1/(2 f): a hopeless threshold.
    p = max(1.0 - 2.0 * f * (1.0 - t), 1e-12)
    band_hit = p**k
    if band_hit >= 1.0:
        return LshParams(bands=1, bits_per_band=k, seed=seed)
    bands = math.ceil(math.log1p(-recall) / math.log1p(-band_hit))
    if bands > MAX_AUTO_BANDS:
        raise MatchingInputError(
            f"LSH would need {bands:,} bands to find pairs at Dice {t:.2f} (more than "
            f"{MAX_AUTO_BANDS:,}): block for a higher threshold ([linkage.blocking] "
            'min_threshold), or score all pairs (method = "none")'
        )
    return LshParams(bands=max(1, bands), bits_per_band=k, seed=seed)


def band_positions(params: LshParams, *, bits: int) -> np.ndarray:
    """The sampled bit positions, ``int64`` of shape ``(bands, bits_per_band)``.

    Distinct within a band, drawn by ``numpy.random.default_rng(params.seed)``.

    Examples
    --------
    >>> band_positions(LshParams(bands=2, bits_per_band=3), bits=64).shape
    (2, 3)
    """
    if params.bits_per_band > bits:
        raise MatchingInputError(
            f"bits_per_band ({params.bits_per_band}) exceeds the CLK length ({bits} bits)"
        )
    rng = np.random.default_rng(params.seed)
    out = np.empty((params.bands, params.bits_per_band), dtype=np.int64)
    for band in range(params.bands):
        out[band] = np.sort(rng.choice(bits, size=params.bits_per_band, replace=False))
    return out


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    check_clks(a, name="a")
    check_clks(b, name="b")
    if a.shape[1] != b.shape[1]:
        raise MatchingInputError(
            f"a and b must have the same CLK length; got {a.shape[1]} and {b.shape[1]} words"
        )


def _check_max_block(max_block: int | None) -> int:
    if max_block is None:
        return -1
    if isinstance(max_block, bool) or not isinstance(max_block, int | np.integer):
        raise MatchingInputError(
            f"max_block must be a whole number or None, got {type(max_block).__name__}"
        )
    if max_block < 1:
        raise MatchingInputError(f"max_block must be at least 1 (or None), got {max_block}")
    return int(max_block)


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """``keys`` sorted, without repeats; sorts in place.

    Not ``numpy.unique``: since numpy 2.3 it hashes first, several times slower on tens of
    millions of ``int64`` keys than one sort.
    """
    keys.sort()
    if keys.shape[0] < 2:
        return keys
    first = np.empty(keys.shape[0], dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return keys[first]


def _sorted_band(keys: np.ndarray, row_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` sorted, and the original row of each; ties in row order."""
    n = keys.shape[0]
    if row_bits and keys.max(initial=0) < (1 << (64 - row_bits)):
        # One uint64 sort of key << row_bits | row is several times faster than an argsort.
        packed = (keys << np.uint64(row_bits)) | np.arange(n, dtype=np.uint64)
        packed.sort()
        rows = (packed & np.uint64((1 << row_bits) - 1)).astype(np.int64)
        return packed >> np.uint64(row_bits), rows
    rows = np.argsort(keys, kind="stable")
    return keys[rows], rows


def _task_bounds(blocks: np.ndarray, tasks: int) -> np.ndarray:
    """Last block (exclusive) of each of ``tasks`` contiguous runs with about equal pairs."""
    sizes = (blocks[:, 1] - blocks[:, 0]) * (blocks[:, 3] - blocks[:, 2])
    cum = np.cumsum(sizes)
    targets = cum[-1] * np.arange(1, tasks + 1) / tasks
    stops = np.minimum(np.searchsorted(cum, targets, side="left") + 1, len(blocks))
    stops[-1] = len(blocks)
    return np.maximum.accumulate(stops).astype(np.int64)


def _join(
    a: np.ndarray,
    b: np.ndarray,
    *,
    params: LshParams,
    max_block: int | None,
    ratio: tuple[int, int] | None,
    collect: bool = True,
    truth: tuple[np.ndarray, np.ndarray] | None = None,
    progress: BandProgress | None = None,
    span: range | None = None,
) -> _Join:
    """Run the bands on checked inputs: score each block's pairs, keep the distinct passing ones.

    ``ratio`` is the integer Dice threshold ``(num, den)``; ``None`` keeps every blocked pair.
    ``collect=False`` only counts the blocks' pairs (for :func:`block_stats`).
    ``span``: only these bands (a unit of cluster matching); :func:`merge_joins` adds them up.
    Memory stays near the passing pairs, whatever the number of pairs compared: a pair is scored
    inside its block, and passing keys are deduplicated as they come.
    """
    limit = _check_max_block(max_block)
    if not isinstance(params, LshParams):
        raise MatchingInputError(f"params must be LshParams, got {type(params).__name__}")
    right_bits = max(b.shape[0] - 1, 0).bit_length()
    if max(a.shape[0] - 1, 0).bit_length() + right_bits > 63:
        raise MatchingInputError(
            f"{a.shape[0]:,} x {b.shape[0]:,} CLKs are too many to pair in one call; split them"
        )
    empty = np.empty(0, dtype=np.int64)
    t_left = t_right = None
    if truth is not None:
        t_left, t_right = _check_truth(truth, a, b)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return _Join(empty, right_bits, 0, 0, 0, 0, None, None)
    positions = band_positions(params, bits=64 * a.shape[1])
    num, den = ratio if ratio is not None else (-1, 1)
    pop_a, pop_b = kernels.popcounts(a), kernels.popcounts(b)
    bits_a = max(a.shape[0] - 1, 0).bit_length()
    bits_b = right_bits
    n_tasks = 4 * numba.get_num_threads()
    compared = np.zeros(n_tasks, dtype=np.int64)
    written = np.zeros(n_tasks, dtype=np.int64)
    truth_hit = None if t_left is None else np.zeros(len(t_left), dtype=bool)
    unique = empty
    pending: list[np.ndarray] = []
    pending_size = 0
    largest = blocks_skipped = pairs_skipped = 0
    bands = range(params.bands) if span is None else span
    for done, band in enumerate(bands):
        if done % _BANDS_AT_ONCE == 0:
            chunk = positions[band : min(band + _BANDS_AT_ONCE, bands.stop)]
            chunk_a, chunk_b = kernels.band_keys(a, chunk), kernels.band_keys(b, chunk)
        keys_a = chunk_a[done % _BANDS_AT_ONCE]
        keys_b = chunk_b[done % _BANDS_AT_ONCE]
        if truth_hit is not None:
            truth_hit |= keys_a[t_left] == keys_b[t_right]
        sorted_a, rows_a = _sorted_band(keys_a, bits_a)
        sorted_b, rows_b = _sorted_band(keys_b, bits_b)
        blocks, big, skipped, skipped_pairs = kernels.band_blocks(sorted_a, sorted_b, limit)
        largest = max(largest, big)
        blocks_skipped += skipped
        pairs_skipped += skipped_pairs
        if len(blocks) and not collect:
            sizes = (blocks[:, 1] - blocks[:, 0]) * (blocks[:, 3] - blocks[:, 2])
            compared[0] += int(sizes.sum())
        elif len(blocks):
            task_stop = _task_bounds(blocks, n_tasks)
            resume_block = np.concatenate([[0], task_stop[:-1]]).astype(np.int64)
            resume_row = np.zeros(n_tasks, dtype=np.int64)
            widest = int((blocks[:, 3] - blocks[:, 2]).max())
            out = np.empty((n_tasks, max(_TASK_KEYS, widest + 1)), dtype=np.int64)
            while (resume_block < task_stop).any():
                kernels.score_blocks(
                    blocks, rows_a, rows_b, a, b, pop_a, pop_b, num, den, right_bits,
                    task_stop, resume_block, resume_row, out, written, compared,
                )  # fmt: skip
                for t in range(n_tasks):
                    if written[t]:
                        pending.append(out[t, : written[t]].copy())
                        pending_size += int(written[t])
        # A pair near the threshold turns up in a few bands, a close one in most: deduplicate
        # as we go so memory stays near the number of distinct pairs.
        if pending_size > max(_COMPACT_KEYS, unique.shape[0]):
            unique = _sorted_unique(np.concatenate([unique, *pending]))
            pending, pending_size = [], 0
            if ratio is not None:
                check_candidate_count(unique.shape[0], num=num, den=den)
        if progress is not None:
            progress(done + 1, len(bands))
    if pending:
        unique = _sorted_unique(np.concatenate([unique, *pending]))
    if ratio is not None:
        check_candidate_count(unique.shape[0], num=num, den=den)
    if blocks_skipped:
        # Counts only: never keys or rows, which could single out records.
        _log.warning(
            "LSH blocking skipped %d blocks over max_block=%d (%d pairs)",
            blocks_skipped,
            limit,
            pairs_skipped,
        )
    found = None if truth_hit is None else int(truth_hit.sum())
    return _Join(
        keys=unique,
        right_bits=right_bits,
        compared=int(compared.sum()),
        largest_block=largest,
        blocks_skipped=blocks_skipped,
        pairs_skipped=pairs_skipped,
        truth_found=found,
        truth_pairs=None if t_left is None else len(t_left),
    )


def merge_joins(parts: list[_Join], *, ratio: tuple[int, int]) -> _Join:
    """The joins of disjoint band spans as one join of all their bands: the same keys and
    figures whatever order the parts come in (a pair found in several bands is kept once)."""
    keys = [p.keys for p in parts]
    unique = _sorted_unique(np.concatenate(keys)) if keys else np.empty(0, dtype=np.int64)
    check_candidate_count(unique.shape[0], num=ratio[0], den=ratio[1])
    return _Join(
        keys=unique,
        right_bits=parts[0].right_bits if parts else 0,
        compared=sum(p.compared for p in parts),
        largest_block=max((p.largest_block for p in parts), default=0),
        blocks_skipped=sum(p.blocks_skipped for p in parts),
        pairs_skipped=sum(p.pairs_skipped for p in parts),
        truth_found=None,
        truth_pairs=None,
    )


def _check_truth(
    truth: tuple[np.ndarray, np.ndarray], a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    t_left = np.asarray(truth[0], dtype=np.int64)
    t_right = np.asarray(truth[1], dtype=np.int64)
    if t_left.shape != t_right.shape or t_left.ndim != 1:
        raise MatchingInputError("truth must be two 1-D index arrays of the same length")
    if t_left.size and (
        t_left.min() < 0 or t_left.max() >= a.shape[0]
        or t_right.min() < 0 or t_right.max() >= b.shape[0]
    ):  # fmt: skip
        raise MatchingInputError("truth holds row indices outside a or b")
    # Distinct pairs, so that completeness counts each once.
    pairs = np.unique(np.stack([t_left, t_right], axis=1), axis=0)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def _split(blocking: _Join) -> tuple[np.ndarray, np.ndarray]:
    left = blocking.keys >> blocking.right_bits
    right = blocking.keys & ((1 << blocking.right_bits) - 1)
    return left, right


def block_pairs(
    a: np.ndarray, b: np.ndarray, *, params: LshParams, max_block: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``(left, right)`` pairs whose CLKs share the key of at least one band.

    Per band, each record's sampled bits are packed into a ``uint64`` key (a Numba kernel),
    both sides are sorted by key and merge-joined; the bands' pairs are deduplicated as they
    come, so memory stays near the number of distinct pairs.

    Parameters
    ----------
    a, b : numpy.ndarray
        Bit-packed CLKs, ``uint64`` of shape ``(n, words)``, C-contiguous, same ``words``.
    params : LshParams
        Bands and bits per band, e.g. from :func:`auto_params`.
    max_block : int or None
        Skip a band's block when it holds more than this many pairs (``len`` of its left rows
        times its right rows); skipped blocks are counted (:func:`block_stats`) and logged.
        ``None`` (the default) keeps every block.

    Returns
    -------
    tuple of numpy.ndarray
        ``int64`` left and right row indices, sorted by left, then right.

    Raises
    ------
    MatchingInputError
        On a wrong dtype, shape, layout or parameter.

    Examples
    --------
    >>> a = np.array([[2**64 - 1], [0]], dtype=np.uint64)
    >>> left, right = block_pairs(a, a[:1], params=LshParams(bands=4, bits_per_band=8))
    >>> left.tolist(), right.tolist()
    ([0], [0])
    """
    _check_pair(a, b)
    return _split(_join(a, b, params=params, max_block=max_block, ratio=None))


def estimate_fill(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of set bits over both CLK arrays (0.5 when both are empty).

    Examples
    --------
    >>> estimate_fill(np.array([[0xFFFF_FFFF]], dtype=np.uint64), np.zeros((1, 1), np.uint64))
    0.25
    """
    _check_pair(a, b)
    rows = a.shape[0] + b.shape[0]
    if rows == 0:
        return 0.5
    total = int(kernels.popcounts(a).sum()) + int(kernels.popcounts(b).sum())
    return total / (rows * 64 * a.shape[1])


def blocked_dice_candidates(
    a: np.ndarray,
    b: np.ndarray,
    *,
    threshold: float,
    params: LshParams | None = None,
    max_block: int | None = None,
) -> Candidates:
    """Blocked pairs whose Dice coefficient is ``>= threshold``, scored exactly.

    The same integer threshold test as :func:`~oda_fed.matching.dice_candidates`, applied only
    to the pairs :func:`block_pairs` yields: the result is a subset of the all-pairs result,
    with the same scores and the same order (score descending, then left, then right).

    Parameters
    ----------
    a, b : numpy.ndarray
        Bit-packed CLKs, ``uint64`` of shape ``(n, words)``, C-contiguous, same ``words``.
    threshold : float
        Dice threshold in ``(0, 1]``.
    params : LshParams or None
        ``None`` (the default) picks :func:`auto_params` for this threshold and the inputs'
        mean fill (:func:`estimate_fill`).
    max_block : int or None
        As for :func:`block_pairs`.

    Returns
    -------
    Candidates

    Raises
    ------
    MatchingInputError
        On a wrong dtype, shape, layout or parameter.

    Examples
    --------
    >>> a = np.array([[0b1111, 0]], dtype=np.uint64)
    >>> b = np.array([[0b0111, 0], [0b1111, 0]], dtype=np.uint64)
    >>> found = blocked_dice_candidates(a, b, threshold=0.8)
    >>> found.right.tolist(), found.score.tolist()
    ([1, 0], [1.0, 0.8571428571428571])
    """
    _check_pair(a, b)
    num, den = threshold_ratio(threshold, words=a.shape[1])
    if params is None:
        fill = min(max(estimate_fill(a, b), 1e-3), 1 - 1e-3)
        params = auto_params(threshold=threshold, fill=fill, bits=64 * a.shape[1])
    found, _stats = blocked_candidates(
        a, b, threshold=threshold, params=params, max_block=max_block
    )
    return found


def blocked_candidates(
    a: np.ndarray,
    b: np.ndarray,
    *,
    threshold: float,
    params: LshParams | None = None,
    max_block: int | None = None,
    truth: tuple[np.ndarray, np.ndarray] | None = None,
    progress: BandProgress | None = None,
    executor: Executor | None = None,
) -> tuple[Candidates, BlockStats]:
    """:func:`blocked_dice_candidates`, with the :class:`BlockStats` of the blocking.

    ``truth`` (``(left, right)`` rows of the true pairs) gives the pair completeness;
    ``progress`` is called with ``(bands done, bands)`` after each band. ``executor`` runs the
    bands (:mod:`oda_fed.matching.executor`; default: here, on the kernels' threads); the
    candidates are the same whichever runs them.

    Examples
    --------
    >>> a = np.array([[0b1111, 0]], dtype=np.uint64)
    >>> found, stats = blocked_candidates(a, a, threshold=0.8)
    >>> len(found), stats.pairs_total
    (1, 1)
    """
    _check_pair(a, b)
    ratio = threshold_ratio(threshold, words=a.shape[1])
    if params is None:
        fill = min(max(estimate_fill(a, b), 1e-3), 1 - 1e-3)
        params = auto_params(threshold=threshold, fill=fill, bits=64 * a.shape[1])
    if executor is None or truth is not None:
        join = _join(
            a, b, params=params, max_block=max_block, ratio=ratio, truth=truth, progress=progress
        )
    else:
        join = executor.join(
            a, b, params=params, max_block=max_block, ratio=ratio, progress=progress
        )
    left, right = _split(join)
    inter = kernels.pair_intersections(a, b, left, right)
    total = kernels.popcounts(a)[left] + kernels.popcounts(b)[right]
    # Correctly rounded division: equal Dice fractions give equal floats, so ties sort as in
    # dice_candidates.
    score = (2 * inter) / total
    order = np.lexsort((right, left, -score))
    found = Candidates(left=left[order], right=right[order], score=score[order])
    return found, _stats(join, a, b, params=params, candidates=len(found))


def _stats(
    join: _Join,
    a: np.ndarray,
    b: np.ndarray,
    *,
    params: LshParams,
    candidates: int,
) -> BlockStats:
    total = a.shape[0] * b.shape[0]
    completeness = None
    if join.truth_found is not None and join.truth_pairs:
        completeness = join.truth_found / join.truth_pairs
    return BlockStats(
        pairs_total=total,
        pairs_compared=join.compared,
        reduction_ratio=1.0 - join.compared / total if total else 0.0,
        pair_completeness=completeness,
        bands=params.bands,
        bits_per_band=params.bits_per_band,
        largest_block=join.largest_block,
        blocks_skipped=join.blocks_skipped,
        pairs_skipped=join.pairs_skipped,
        candidates=candidates,
    )


def block_stats(
    a: np.ndarray,
    b: np.ndarray,
    *,
    params: LshParams,
    truth: tuple[np.ndarray, np.ndarray] | None = None,
    max_block: int | None = None,
) -> BlockStats:
    """Block ``a`` against ``b`` and measure the reduction ratio and pair completeness.

    Parameters
    ----------
    a, b : numpy.ndarray
        Bit-packed CLKs, as for :func:`block_pairs`.
    params : LshParams
        Bands and bits per band.
    truth : tuple of numpy.ndarray or None
        ``(left, right)`` row indices of the true matching pairs; gives ``pair_completeness``.
    max_block : int or None
        As for :func:`block_pairs`.

    Returns
    -------
    BlockStats

    Examples
    --------
    >>> a = np.array([[2**64 - 1], [0]], dtype=np.uint64)
    >>> stats = block_stats(a, a, params=LshParams(bands=1, bits_per_band=4),
    ...                     truth=(np.array([0, 1]), np.array([0, 1])))
    >>> stats.pairs_compared, stats.reduction_ratio, stats.pair_completeness
    (2, 0.5, 1.0)
    """
    _check_pair(a, b)
    join = _join(a, b, params=params, max_block=max_block, ratio=None, collect=False, truth=truth)
    return _stats(join, a, b, params=params, candidates=0)

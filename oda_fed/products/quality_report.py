"""The linkage-quality report: score histogram, estimated precision/recall curves, HTML page.

Charts are drawn on the Agg canvas directly (no ``pyplot``), as :mod:`oda_fed.products.charts`
does, and the page embeds them with the helpers of :mod:`oda_fed.products.report`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from oda_fed.matching.probabilistic import Model
from oda_fed.matching.quality import QualityEstimate, mixture_density
from oda_fed.products.report import _decimal, _environment, _number, _png_data_uri, _scalar

__all__ = ["write_quality_report"]

_DPI = 100
_MEASURES = (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"))


def write_quality_report(
    *,
    out_dir: Path,
    title: str,
    scores: np.ndarray,
    estimate: QualityEstimate,
    chosen_threshold: float,
    block_stats: Mapping[str, object] | None,
    entities_by_partner_count: Mapping[int, int],
    truth: Mapping[str, float] | None = None,
    internal: bool = False,
    model: Model | None = None,
    degenerate: Sequence[str] = (),
) -> dict[str, Path]:
    """Write ``score_histogram.png``, ``quality_curves.png`` and ``quality.html`` into ``out_dir``.

    Only aggregates are drawn or tabled (a histogram, curves, counts), never a record.

    Parameters
    ----------
    out_dir
        Folder to write into; created if missing.
    title
        Page and chart title.
    scores
        The best scores per record the estimate was made from.
    estimate
        From :func:`oda_fed.matching.quality.estimate_quality`; its fit is overlaid on the
        histogram when usable.
    chosen_threshold
        The threshold used for linkage, marked on both charts and tabled.
    block_stats
        Optional blocking statistics (name to scalar), tabled as given.
    entities_by_partner_count
        Number of partners to number of entities known to that many.
    truth
        Optional true figures: ``precision``, ``recall``, ``f1`` at the chosen threshold, and
        optionally ``thresholds``, ``true_precision``, ``true_recall`` sequences to overlay the
        true curves (synthetic data only).
    internal
        Mark the page as internal to the coordinator (its figures are before disclosure control
        and never go to a partner), as every federated round's report is.
    model
        The match weights of field-aware linkage: charted and tabled (m, u and weight of every
        level), and the scores are then match probabilities.
    degenerate
        Why the linkage cannot be trusted (:mod:`oda_fed.matching.guard`), shown first.

    Returns
    -------
    dict[str, pathlib.Path]
        ``{"histogram": ..., "curves": ..., "html": ...}``.

    Examples
    --------
    >>> import tempfile
    >>> from oda_fed.matching.quality import estimate_quality
    >>> s = np.random.default_rng(0).uniform(0.5, 1.0, 200)
    >>> paths = write_quality_report(
    ...     out_dir=Path(tempfile.mkdtemp()), title="Round 1", scores=s,
    ...     estimate=estimate_quality(s), chosen_threshold=0.8, block_stats=None,
    ...     entities_by_partner_count={1: 10, 2: 5})
    >>> sorted(paths)
    ['curves', 'histogram', 'html']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    values = np.asarray(scores, dtype=np.float64)
    label = "Dice score" if model is None else "match probability"
    paths = {
        "histogram": _save(
            _histogram(values, estimate, chosen_threshold, title, label=label),
            out_dir,
            "score_histogram.png",
        ),
        "curves": _save(
            _curves(estimate, chosen_threshold, title, truth), out_dir, "quality_curves.png"
        ),
    }
    if model is not None:
        paths["weights"] = _save(_weights_chart(model, title), out_dir, "match_weights.png")
    fit = estimate.fit
    at = _nearest(estimate, chosen_threshold)
    context = {
        "weights": [] if model is None else _weights_table(model),
        "household": [] if model is None else _household_table(model),
        "weights_chart": (
            _png_data_uri(paths["weights"], "match weights") if model is not None else ""
        ),
        "prior": "" if model is None else f"{model.prior:.3g}",
        "title": title,
        "internal": internal,
        "degenerate": list(degenerate),
        "floor": _decimal(fit.floor) if fit is not None else "the floor",
        "n_scores": _number(fit.n_scores) if fit is not None else "0",
        "reason": estimate.reason,
        "has_truth": truth is not None,
        "at_threshold": [("Threshold", _decimal(chosen_threshold), _decimal(chosen_threshold))]
        + [(label, _figure(at[key]), _figure((truth or {}).get(key))) for key, label in _MEASURES],
        "histogram": _png_data_uri(paths["histogram"], "quality histogram"),
        "curves": _png_data_uri(paths["curves"], "quality curves"),
        "block_stats": [(str(k), _scalar(v)) for k, v in (block_stats or {}).items()],
        "entities_by_partner_count": [
            (str(k), _number(v)) for k, v in sorted(entities_by_partner_count.items())
        ],
    }
    html = _environment().get_template("quality.html").render(**context)
    paths["html"] = out_dir / "quality.html"
    paths["html"].write_text(html, encoding="utf-8")
    return paths


def _nearest(estimate: QualityEstimate, threshold: float) -> dict[str, float]:
    if estimate.thresholds.size == 0:
        return {key: math.nan for key, _ in _MEASURES}
    precision, recall, f1 = estimate.at(threshold)
    return {"precision": precision, "recall": recall, "f1": f1}


def _figure(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "not estimated"
    return _decimal(value)


def _save(fig: Figure, out_dir: Path, name: str) -> Path:
    path = out_dir / name
    # No software metadata: the same inputs give the same bytes.
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    return path


def _weights_table(model: Model) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for comp, m, u, w in zip(model.comparisons, model.m, model.u, model.weights(), strict=True):
        for level in range(1, len(comp.labels)):
            rows.append((comp.name, comp.labels[level], f"{m[level]:.4f}", f"{u[level]:.4g}",
                         f"{w[level]:+.2f}"))  # fmt: skip
    return rows


def _household_table(model: Model) -> list[tuple[str, str, str, str, str, str]]:
    """The levels whose weight differs where both records share a location
    (:attr:`~oda_fed.matching.probabilistic.Model.household`): u there and the weight there."""
    if model.household is None:
        return []
    location = next(c for c in model.comparisons if c.kind == "location")
    rows = []
    for comp, u, w, table in zip(model.comparisons, model.u, model.weights(), model.household,
                                 strict=True):  # fmt: skip
        for at, level in zip(*np.nonzero(table), strict=True):
            there = u[level] * 2.0 ** -table[at, level]
            rows.append((comp.name, location.labels[at], comp.labels[level], f"{there:.4g}",
                         f"{w[level] + table[at, level]:+.2f}", f"{table[at, level]:+.2f}"))  # fmt: skip
    return rows


def _weights_chart(model: Model, title: str) -> Figure:
    """One horizontal bar per level of every comparison, green for, red against, as Splink
    draws its match weights."""
    rows = _weights_table(model)
    fig = Figure(figsize=(8.0, 0.25 * len(rows) + 1.2), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    weights = [float(r[4]) for r in rows]
    y = np.arange(len(rows))[::-1]
    colours = ["#1a7f37" if w > 0 else "#b00020" for w in weights]
    ax.barh(y, weights, color=colours)
    ax.set_yticks(y, [f"{r[0]}: {r[1]}" for r in rows], fontsize="small")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("match weight, log2(m / u)")
    ax.set_title(title.replace("$", r"\$"))
    return fig


def _histogram(
    scores: np.ndarray,
    estimate: QualityEstimate,
    threshold: float,
    title: str,
    *,
    label: str = "Dice score",
) -> Figure:
    fig = Figure(figsize=(8.0, 4.5), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    fit = estimate.fit
    floor = fit.floor if fit is not None else 0.0
    finite = scores[np.isfinite(scores) & (scores >= floor)]
    edges = np.linspace(floor, 1.0, 51)
    counts, _, _ = ax.hist(
        finite, bins=edges, color="#9bb7d4", edgecolor="white", label="best score per record"
    )
    if fit is not None and fit.ok:
        x = np.linspace(floor, 1.0, 400)
        match, nonmatch = mixture_density(fit, x)
        scale = fit.n_scores * (edges[1] - edges[0])
        ax.plot(x, match * scale, color="#1a7f37", label="fitted matches")
        ax.plot(x, nonmatch * scale, color="#b00020", label="fitted non-matches")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.2f}")
    if finite.size:
        # Non-matches outnumber matches near the floor; a log scale keeps both visible.
        ax.set_yscale("log")
        # The fitted curves' far tails would stretch the axis to absurd powers of ten: show down
        # to below one record and no further.
        ax.set_ylim(0.3, max(float(counts.max(initial=1.0)), 1.0) * 3)
    ax.set_xlabel(label)
    ax.set_ylabel("records")
    ax.set_title(title.replace("$", r"\$"))
    ax.legend(fontsize="small")
    return fig


def _curves(
    estimate: QualityEstimate, threshold: float, title: str, truth: Mapping[str, object] | None
) -> Figure:
    fig = Figure(figsize=(8.0, 4.5), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    t = estimate.thresholds
    ax.plot(t, estimate.precision, color="#1f4e8c", label="precision (estimated)")
    ax.plot(t, estimate.recall, color="#c0620b", label="recall (estimated)")
    if truth is not None and "thresholds" in truth:
        true_t = np.asarray(truth["thresholds"], dtype=np.float64)
        for key, color in (("true_precision", "#1f4e8c"), ("true_recall", "#c0620b")):
            if key in truth:
                label = key.replace("true_", "") + " (true)"
                ax.plot(
                    true_t,
                    np.asarray(truth[key], dtype=np.float64),
                    color=color,
                    linestyle=":",
                    label=label,
                )
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.2f}")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("threshold")
    ax.set_ylabel("share")
    ax.set_title(title.replace("$", r"\$"))
    ax.legend(fontsize="small", loc="lower left")
    return fig

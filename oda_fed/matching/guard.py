"""When a linkage cannot be trusted: a degenerate fit, said plainly.

A linkage can run to the end and still be wrong throughout: one partner encoded with another
secret (its records then look like no one's), or the scores show no split between matches and
non-matches, so the automatic threshold falls to its floor and links chance pairs. Nothing in
the entities says so. These checks look at what the run itself found, without truth:

- **the threshold at its floor**: ``threshold = "auto"`` chose the lowest threshold it may;
- **no separation**: the estimated precision at the threshold used is low, or no estimate could
  be made at all;
- **a pair of sources with almost no links**: two sources of some size share almost no entities,
  which partners linked for a purpose rarely do (a wrong secret, other settings, or the wrong
  extract at one of them).

An embedded run prints the reasons and writes them into the quality report; a federated round
holds its products for an operator's release, whatever the project's ``auto_release`` says.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Below this estimated precision at the threshold used, matches and non-matches are not told
#: apart.
MIN_PRECISION = 0.8
#: Two sources sharing entities with fewer than this share of the smaller one's records are
#: suspect, once the smaller holds at least :data:`MIN_PAIR_RECORDS` records.
MIN_PAIR_SHARE = 0.01
MIN_PAIR_RECORDS = 50


def fit_problems(
    *, threshold: float, auto_floor: float | None, precision: float, reason: str | None
) -> list[str]:
    """Why the fit behind ``threshold`` cannot be trusted (empty when it can).

    ``auto_floor`` is the lowest threshold ``"auto"`` may choose, or None for a threshold the
    project set; ``precision`` the estimate at ``threshold``; ``reason`` why there is no
    estimate, if there is none.

    Examples
    --------
    >>> fit_problems(threshold=0.5, auto_floor=0.5, precision=0.62, reason=None)[0][:41]
    'the automatic threshold fell to its floor'
    >>> fit_problems(threshold=0.85, auto_floor=0.5, precision=0.99, reason=None)
    []
    """
    problems = []
    if auto_floor is not None and threshold <= auto_floor + 1e-9:
        problems.append(
            f"the automatic threshold fell to its floor ({auto_floor:.2f}): the scores show no "
            "clear split between matches and non-matches"
        )
    if reason is not None:
        problems.append(f"no quality estimate could be made ({reason})")
    elif np.isfinite(precision) and precision < MIN_PRECISION:
        problems.append(
            f"estimated precision is only {precision:.2f} at the threshold used: matches and "
            "non-matches are not told apart"
        )
    return problems


def weak_pairs(labels: Sequence[np.ndarray], names: Sequence[str]) -> list[str]:
    """Pairs of sources (``labels[i]``: each record's entity) that share almost no entities.

    Examples
    --------
    >>> a, b = np.arange(100), np.arange(100, 200)
    >>> weak_pairs([a, b], ["council", "police"])[0][:39]
    "'council' and 'police' share 0 entities"
    >>> weak_pairs([a, a], ["council", "police"])
    []
    """
    out = []
    entities = [np.unique(np.asarray(lab)) for lab in labels]
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            smaller = min(len(labels[i]), len(labels[j]))
            if smaller < MIN_PAIR_RECORDS:
                continue
            shared = len(np.intersect1d(entities[i], entities[j], assume_unique=True))
            if shared < MIN_PAIR_SHARE * smaller:
                out.append(
                    f"'{names[i]}' and '{names[j]}' share {shared:,} "
                    f"{'entity' if shared == 1 else 'entities'}, "
                    f"{shared / smaller:.1%} of the smaller's {smaller:,} records: one of them "
                    "may encode with another linkage secret or other settings, or send the wrong "
                    "extract"
                )
    return out

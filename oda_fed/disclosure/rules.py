"""Disclosure rules a project agrees for its data products, and the error they raise."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from oda_fed.errors import OdaFedError

__all__ = ["DisclosureError", "DisclosureRules"]


class DisclosureError(OdaFedError, ValueError):
    """A table or a rule cannot be put through disclosure control as it is.

    It is also a ``ValueError``, so callers that only know the standard exception still catch it.
    Messages never quote count values: a small count in an error that crosses a boundary would be
    the very disclosure the check exists to stop.
    """


@dataclass(frozen=True)
class DisclosureRules:
    """Small-cell suppression and rounding applied to every released count.

    Parameters
    ----------
    min_cell
        Counts below this are suppressed, zero included (a published zero says "nobody", which
        is itself a disclosure when combined with other tables). ``0`` turns suppression off.
    rounding_base
        Every count that is not suppressed is rounded to the nearest multiple of this; halves
        round up. ``1`` turns rounding off.

    Examples
    --------
    >>> DisclosureRules()
    DisclosureRules(min_cell=10, rounding_base=5)
    >>> DisclosureRules(min_cell=5, rounding_base=1).describe()
    'Counts below 5 are suppressed. Counts are not rounded. No totals are published.'
    """

    min_cell: int = 10
    rounding_base: int = 5

    def __post_init__(self) -> None:
        # bool is an int subclass; True as a threshold is a typo, not a rule.
        for name in ("min_cell", "rounding_base"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise DisclosureError(f"{name} must be an integer, got {type(value).__name__}")
        if self.min_cell < 0:
            raise DisclosureError("min_cell must be 0 or more")
        if self.rounding_base < 1:
            raise DisclosureError("rounding_base must be 1 or more")

    def for_partners(
        self, partners: Iterable[str], *, min_cell_by_partner: Mapping[str, int]
    ) -> DisclosureRules:
        """The rules for a product that involves ``partners``: the strictest ``min_cell`` wins.

        A partner may require a higher threshold than the project's (its own information
        sharing agreement, a sensitive service). A product built from several partners' data is
        held to the highest threshold among them and the project's; partners with no entry in
        ``min_cell_by_partner`` use the project's.

        Parameters
        ----------
        partners
            The partners whose data the product involves.
        min_cell_by_partner
            Per-partner thresholds, where a partner set one.

        Returns
        -------
        DisclosureRules
            These rules with ``min_cell`` raised to the strictest; the rounding base is kept.

        Examples
        --------
        >>> DisclosureRules(min_cell=10).for_partners(
        ...     ["council", "police"], min_cell_by_partner={"police": 20, "nhs": 50})
        DisclosureRules(min_cell=20, rounding_base=5)
        """
        if isinstance(partners, str):
            raise DisclosureError("partners must be a collection of partner ids, not one string")
        strictest = self.min_cell
        for partner in partners:
            value = min_cell_by_partner.get(partner, self.min_cell)
            # Validate through the constructor: a partner's threshold obeys the same rules.
            strictest = max(strictest, DisclosureRules(min_cell=value).min_cell)
        return replace(self, min_cell=strictest)

    def describe(self, *, keyed: bool = False, protected: bool = False) -> str:
        """Say the rules in plain sentences for captions and reports.

        ``keyed``: counts were rounded by cell key rather than half up; ``protected``: cells
        that would give a suppressed count back were suppressed too.

        Examples
        --------
        >>> DisclosureRules(min_cell=0, rounding_base=1).describe()
        'No counts are suppressed. Counts are not rounded. No totals are published.'
        >>> DisclosureRules().describe(keyed=True, protected=True)  # doctest: +NORMALIZE_WHITESPACE
        'Counts below 10 are suppressed, and so are cells that would let a reader work a
        suppressed count out. Other counts are rounded to a multiple of 5, up or down at random
        but always the same way for the same count. No totals are published.'
        """
        if self.min_cell > 0:
            also = (
                ", and so are cells that would let a reader work a suppressed count out"
                if protected
                else ""
            )
            parts = [f"Counts below {self.min_cell} are suppressed{also}."]
            other = "Other counts"
        else:
            parts = ["No counts are suppressed."]
            other = "Counts"
        if self.rounding_base > 1 and keyed:
            parts.append(
                f"{other} are rounded to a multiple of {self.rounding_base}, up or down at random "
                "but always the same way for the same count."
            )
        elif self.rounding_base > 1:
            parts.append(f"{other} are rounded to the nearest {self.rounding_base} (halves up).")
        else:
            parts.append("Counts are not rounded.")
        parts.append("No totals are published.")
        return " ".join(parts)

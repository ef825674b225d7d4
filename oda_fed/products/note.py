"""The note beside every released product, for a reader who is not an analyst (a councillor, say):
what "suppressed" and rounding mean, why a value can be "not known", and where the figures came
from. It is built from the product and the project, so every product gets one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from oda_fed.config import PARTNERS, AttributeRef, ConfigError, Product, Project
from oda_fed.products.tables import ProductTable

__all__ = ["Provenance", "Section", "about_figures", "councillor_note", "product_note"]

#: How a reader is told what each kind of linkage field is.
_FIELD_WORDS = {
    "name": "names",
    "date_of_birth": "dates of birth",
    "postcode": "postcodes",
    "address": "addresses",
    "sex": "sex",
    "nhs_number": "NHS numbers",
    "uprn": "property references (UPRNs)",
    "free_text": "other details",
}


@dataclass(frozen=True)
class Provenance:
    """Where a release's figures came from, as its pages tell a reader.

    Attributes
    ----------
    project
        The signed project the figures were produced under.
    fingerprint
        The project file's fingerprint, which every partner's DPO pinned.
    release_id
        The round (or the embedded run) that made the figures.
    generated_at
        When they were made, as an ISO 8601 time.
    federated
        True for a federated round (the coordinator matched coded keys), False for the
        embedded mode (``oda-fed analyse`` on files, in one process).
    """

    project: Project
    fingerprint: str
    release_id: str
    generated_at: str
    federated: bool = True

    @property
    def date(self) -> str:
        """``generated_at`` as a reader writes a date ("1 March 2026"), or as given."""
        try:
            when = datetime.fromisoformat(self.generated_at)
        except ValueError:
            return self.generated_at
        return f"{when.day} {when:%B %Y}"


@dataclass(frozen=True)
class Section:
    """One part of the note: a heading and its paragraphs of plain text."""

    heading: str
    paragraphs: tuple[str, ...]


def councillor_note(product: ProductTable, provenance: Provenance | None) -> list[Section]:
    """The whole note for one product's own page: what it counts, then how to read it.

    Examples
    --------
    >>> import pandas as pd
    >>> from oda_fed.disclosure import DisclosureRules
    >>> from oda_fed.products.tables import partner_count_by_area
    >>> product = partner_count_by_area(
    ...     entity_partners=pd.Series([1]), entity_area=pd.Series(["W1"]),
    ...     product_id="p", title="t", rules=DisclosureRules(), n_partners=2)
    >>> [s.heading for s in councillor_note(product, None)]  # doctest: +NORMALIZE_WHITESPACE
    ['What is counted', 'Why "area not known"', 'Suppressed cells', 'Rounding',
     'Where the figures came from']
    """
    return product_note(product, provenance) + about_figures([product], provenance)


def product_note(product: ProductTable, provenance: Provenance | None) -> list[Section]:
    """What this product counts and why some of its values are "not known"."""
    project = provenance.project if provenance is not None else None
    config = _config(project, product.product_id)
    sections = [Section("What is counted", tuple(_counted(product, project, config)))]
    unknown = _not_known(product, project, config)
    if unknown:
        sections.append(Section(f'Why "{product.unknown_area}"', tuple(unknown)))
    return sections


def about_figures(products: Sequence[ProductTable], provenance: Provenance | None) -> list[Section]:
    """How to read the figures of ``products`` (suppression, rounding), and where they came from.

    Said once for a page of several products: a rule they do not share is left to each
    product's own line of rules.
    """
    return [
        Section("Suppressed cells", tuple(_suppression(products))),
        Section("Rounding", tuple(_rounding(products))),
        Section("Where the figures came from", tuple(_source(products, provenance))),
    ]


# --- what is counted -------------------------------------------------------------------------------


def _counted(product: ProductTable, project: Project | None, config: Product | None) -> list[str]:
    out = [
        "Each count is a number of people. The partners' records about the same person are "
        "linked and counted once, however many records there are."
    ]
    n_partners = len(project.partners) if project is not None else None
    if PARTNERS in product.dims:
        of = f" of the {n_partners} partners" if n_partners else " of the partners"
        out.append(
            f'"Known to 2 partners" means that records about the person were found at two{of}, '
            "and so on."
        )
    if config is not None:
        if config.cohort.min_partners > 1:
            out.append(
                f"Only people known to at least {config.cohort.min_partners} partners are counted."
            )
        for dim, values in config.cohort.where.items():
            out.append(f"Only people whose {_attribute_words(project, dim)} is "
                       f"{_either(values)} are counted.")  # fmt: skip
    if product.is_rate:
        wanted = (
            " and ".join(
                f"whose {_attribute_words(project, d)} is {_either(v)}"
                for d, v in config.numerator.items()
            )
            if config is not None and config.numerator
            else "who also meet the product's condition"
        )
        out.append(
            f'Each share is the percentage of the people in a cell {wanted}; "of N" is the '
            "number of people in the cell. Shares are worked out from the published, rounded "
            "counts, and a share is suppressed wherever either of its counts is."
        )
    return out


def _not_known(product: ProductTable, project: Project | None, config: Product | None) -> list[str]:
    """Why a dimension's value can be "not known": one paragraph per dimension a partner gives."""
    if product.unknown_area is None:
        return []
    out = []
    for dim in product.dims:
        if dim == PARTNERS:
            continue
        ref = _ref(dim, config)
        what = _attribute_words(project, str(ref) if ref else dim)
        holder = _partner_name(project, ref.partner) if ref else "the partner that records it"
        out.append(
            f'"{product.unknown_area}" counts the people whose {what} {holder} cannot give: '
            f"either {holder} does not know the person (their records are held only by other "
            f"partners), or it knows them but holds no {what} for them. These are real people "
            f"counted like any other; only their {what} is missing."
        )
    return out


# --- how to read the figures -----------------------------------------------------------------------


def _suppression(products: Sequence[ProductTable]) -> list[str]:
    floors = {p.rules.min_cell for p in products}
    small = (
        f"smaller than {next(iter(floors))}"
        if len(floors) == 1 and 0 not in floors
        else "too small to publish (each table says the limit)"
    )
    out = [
        f'A cell marked "suppressed" hides a count {small}, so that no one can be picked out '
        "from the table.",
        "Suppressed does not mean zero. The hidden number is not published at all, and is "
        "never shown as 0 or left blank.",
        "Other cells may be suppressed too, even with larger counts, so that a hidden count "
        "cannot be worked out by taking the other cells away from a total.",
    ]
    return out


def _rounding(products: Sequence[ProductTable]) -> list[str]:
    bases = {p.rules.rounding_base for p in products}
    if bases == {1}:
        return ["Counts are not rounded."]
    base = f"a multiple of {next(iter(bases))}" if len(bases) == 1 else "a round number"
    return [
        f"Counts are rounded to {base} (each table's rules say how), so a small change in the "
        "data does not show.",
        "Each cell is rounded on its own, so the cells of a row or a column may not add up to "
        "a total published elsewhere, and two tables may give slightly different totals for the "
        "same people.",
    ]


def _source(products: Sequence[ProductTable], provenance: Provenance | None) -> list[str]:
    if provenance is None:
        return [
            "These figures come from linking the partners' records. This page was written "
            "without the details of the project and release it belongs to; ask whoever sent it."
        ]
    project = provenance.project
    partners = _and([p.name for p in project.partners])
    fields = _and(
        list(dict.fromkeys(_FIELD_WORDS.get(f.type, f.name) for f in project.linkage.fields))
    )
    out = [f'These figures come from records held by {partners}, the partners of the project '
           f'"{project.title}".']  # fmt: skip
    if provenance.federated:
        out.append(
            f"The partners linked their records without sharing them: each partner turned the "
            f"{fields} in its records into coded keys on its own systems, and the Office of Data "
            "Analytics matched the coded keys. Names and other identifiers never left the "
            "partner that holds them, and no partner saw another partner's records."
        )
    else:
        out.append(
            f"The records were linked on their {fields}, turned into coded keys, in one run on "
            "the partners' files."
        )
    out.append(
        "Linking can miss that two records are the same person, or join two people who look "
        "alike, so a few people may be counted in the wrong cell."
    )
    given = list(dict.fromkeys(
        ref for p in products if (c := _config(project, p.product_id)) is not None
        for ref in c.attributes()
    ))  # fmt: skip
    for partner, refs in _by_partner(given).items():
        words = _and([_attribute_words(project, str(r)) for r in refs])
        out.append(f"The {words} come{'s' if len(refs) == 1 else ''} from "
                   f"{_partner_name(project, partner)}'s records.")  # fmt: skip
    made = "round" if provenance.federated else "run"
    out.append(
        f"Produced in {made} {provenance.release_id} on {provenance.date}, under the project "
        f"agreement with fingerprint {provenance.fingerprint}."
    )
    return out


# --- helpers ---------------------------------------------------------------------------------------


def _config(project: Project | None, product_id: str) -> Product | None:
    if project is None:
        return None
    return next((p for p in project.products if p.id == product_id), None)


def _ref(dim: str, config: Product | None) -> AttributeRef | None:
    """The attribute a dimension shows: ``partner.attribute``, or the area's for ``area``."""
    if "." in dim:
        try:
            return AttributeRef.parse(dim)
        except ValueError:
            return None
    if config is not None and config.area is not None:
        return AttributeRef(partner=config.area.partner, name=config.area.attribute)
    return None


def _attribute_words(project: Project | None, dim: str) -> str:
    """An attribute as a reader knows it: its title when the project gives one, else its name."""
    partner, _, name = dim.rpartition(".")
    if project is not None and partner:
        try:
            title = project.attribute(partner=partner, name=name).title
        except ConfigError:
            title = ""
        if title:
            return title[0].lower() + title[1:]
    return name.replace("_", " ")


def _partner_name(project: Project | None, partner_id: str) -> str:
    if project is None:
        return partner_id
    try:
        return project.partner(partner_id).name
    except ConfigError:
        return partner_id


def _by_partner(refs: Sequence[AttributeRef]) -> dict[str, list[AttributeRef]]:
    out: dict[str, list[AttributeRef]] = {}
    for ref in refs:
        out.setdefault(ref.partner, []).append(ref)
    return out


def _either(values: Sequence[str]) -> str:
    quoted = [f'"{v}"' for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _and(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]

"""Configuration: the project agreement (``project.toml``), ``node.toml`` and ``coordinator.toml``.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting. Errors
name the file, the key and what was expected. Relative paths in a file resolve against that file's
folder, so a deployment kit can be moved as a whole.

The project fingerprint is ``sha256:`` plus the SHA-256 of the project file's exact bytes, so a DPO can
check it with ``sha256sum project.toml``.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import re
import tomllib
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Annotated, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from oda_fed.errors import ConfigError
from oda_fed.standardise import FieldType  # the field vocabulary is the standardisers'
from oda_fed.transport.protocol import CHUNK_RECORDS

PROJECT_FORMAT_VERSION = 1
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
FINGERPRINT_PATTERN = r"^sha256:[0-9a-f]{64}$"

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Fingerprint = Annotated[str, Field(pattern=FINGERPRINT_PATTERN)]
METRICS_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$"
#: Where a service serves its Prometheus metrics: HOST:PORT ([::1]:PORT for IPv6).
MetricsAddress = Annotated[str, Field(pattern=METRICS_PATTERN)]
#: A Dask scheduler (tcp://, tls://) or "local" / "local:N" (a LocalCluster of N workers here).
DaskAddress = Annotated[str, Field(pattern=r"^((tcp|tls)://\S+|local(:[1-9][0-9]*)?)$")]
#: How a service writes its log: rich's lines for a person, or one JSON object a line.
LogFormat = Literal["text", "json"]
EXACT_TYPES = ("nhs_number", "uprn")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Protective(_Strict):
    """Settings that protect people (encoding, disclosure, retention): a value of the wrong type
    is refused, never coerced, so ``bits = "1024"`` or ``auto_release = "no"`` is an error rather
    than a guess."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- project.toml -------------------------------------------------------------------------------


class SourceLayout(_Strict):
    """How a partner's extract names its columns (optional in the project; a node may override)."""

    record_id: str = "record_id"
    columns: dict[str, str] = Field(default_factory=dict)
    attributes: dict[str, str] = Field(default_factory=dict)
    date_format: str | None = None


class Partner(_Strict):
    id: Name
    name: str
    source: SourceLayout | None = None
    # This partner's own smallest publishable count, when it is stricter than the project's:
    # the strictest rule of the partners whose data a product uses wins.
    min_cell: int | None = Field(default=None, ge=1)
    # The most records this partner's extract may hold: the coordinator refuses an upload that
    # declares more, so no certificate can fill its disk or memory in this partner's name.
    max_records: int = Field(default=10_000_000, ge=1, le=1_000_000_000)


class LinkageField(_Protective):
    name: Name
    type: FieldType
    weight: float = Field(default=1.0, gt=0, le=10)
    ngram: int | None = Field(default=None, ge=1, le=5)
    bits_per_token: int | None = Field(default=None, ge=1, le=200)
    # Also send a keyed token (HMAC) of the value so the coordinator can match it exactly. Only for
    # exact identifiers; the DPOs agree to it by signing a project that says so.
    keyed_token: bool = False

    @model_validator(mode="after")
    def _token_only_for_identifiers(self) -> LinkageField:
        if self.keyed_token and self.type not in EXACT_TYPES:
            raise ValueError(
                f"keyed_token is only for exact identifiers ({', '.join(EXACT_TYPES)}), "
                f"not a {self.type} field"
            )
        return self


class HardeningOptions(_Protective):
    """``[linkage.hardening]``: see docs/hardening.md for what each costs and protects against."""

    diffusion_taps: int = Field(default=0, ge=0, le=64)
    salt_field: Name | None = None
    balance: bool = False
    xor_fold: bool = False
    blip: float = Field(default=0.0, ge=0.0, lt=0.5)


class BlockingOptions(_Protective):
    """``[linkage.blocking]``: when the coordinator blocks with LSH, from the CLK bits alone.

    The engine reads these as :class:`oda_fed.matching.blocking.Blocking`, through
    :func:`oda_fed.linkage.settings_for`.
    """

    # "auto" blocks a pair of partners above lsh_above_pairs (rows x rows); "lsh" always; "none"
    # scores all pairs.
    method: Literal["auto", "lsh", "none"] = "auto"
    lsh_above_pairs: int = Field(default=2_500_000_000, ge=0)
    # Override the automatic parameters (see oda_fed.matching.blocking.auto_params).
    bands: int | None = Field(default=None, ge=1, le=100_000)
    bits_per_band: int | None = Field(default=None, ge=1, le=64)
    target_recall: float = Field(default=0.99, gt=0, lt=1)
    min_threshold: float = Field(default=0.75, gt=0, le=1)
    max_block: int | None = Field(default=None, ge=1)


class Linkage(_Protective):
    bits: int = Field(default=1024, ge=64, le=8192)
    # A number in (0, 1], or "auto" (the default): the threshold that maximises F1 as estimated
    # from the scores, with no ground truth (see oda_fed.matching.quality).
    threshold: Annotated[float, Field(gt=0, le=1)] | Literal["auto"] = "auto"
    one_record_per_partner: bool = True
    # When keyed tokens and CLKs disagree: "token" trusts identifiers (agreeing tokens link,
    # differing ones forbid a link), "clk" trusts similarity (see matching.link.apply_tokens).
    token_conflict: Literal["token", "clk"] = "token"
    # Records of the smaller partner whose best scores the quality estimate fits, at most.
    quality_sample: int = Field(default=5_000, ge=100)
    # Keep entity ids stable across rounds: nodes send a keyed pseudonym of each record id and the
    # coordinator updates a persistent linked index. The pseudonyms let the coordinator follow a
    # partner's record from round to round, so the DPOs agree to it by signing a project that
    # says so.
    stable_entity_ids: bool = False
    # "clk" links on whole-record CLK similarity. "fields" also sends field evidence (small
    # Bloom filters per name and address field, keyed tokens of parts of dates and postcodes;
    # see docs/hardening.md for what each reveals) and links by match probability, with
    # Fellegi-Sunter weights learnt without truth (oda_fed.matching.link_fields).
    method: Literal["clk", "fields"] = "fields"
    # With method = "fields": the match probability a pair needs to be linked.
    match_probability: float = Field(default=0.5, gt=0, lt=1)
    fields: list[LinkageField] = Field(min_length=1)
    hardening: HardeningOptions = Field(default_factory=HardeningOptions)
    blocking: BlockingOptions = Field(default_factory=BlockingOptions)

    @model_validator(mode="after")
    def _salt_field_exists(self) -> Linkage:
        salt = self.hardening.salt_field
        if salt is not None and salt not in {f.name for f in self.fields}:
            raise ValueError(f"hardening.salt_field '{salt}' is not one of the linkage fields")
        if self.hardening.xor_fold and self.bits < 128:
            raise ValueError("hardening.xor_fold needs bits of at least 128")
        return self

    @property
    def wire_bits(self) -> int:
        """Length of the CLKs that leave a node: balancing doubles it, XOR-folding halves it."""
        bits = self.bits * (2 if self.hardening.balance else 1)
        return bits // 2 if self.hardening.xor_fold else bits

    @field_validator("bits")
    @classmethod
    def _power_of_two(cls, bits: int) -> int:
        if bits & (bits - 1):
            raise ValueError("must be a power of two and a multiple of 64, e.g. 1024")
        return bits

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, fields: list[LinkageField]) -> list[LinkageField]:
        names = [f.name for f in fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"field names must be unique; repeated: {', '.join(dupes)}")
        return fields


class Domain(_Strict):
    """The values an attribute may take when it leaves a node.

    Anything else is refused by the node before it sends, and again by the coordinator, so a
    column mapped by mistake (surnames where ward codes should be) never leaves. An empty value
    means "not known" and is always allowed.
    """

    # Every allowed value, e.g. the authority's ward codes.
    codes: list[str] | None = Field(default=None, min_length=1)
    # A regular expression every value must match in full, e.g. "E05[0-9]{6}".
    pattern: str | None = Field(default=None, max_length=200)
    # At most this many distinct values in one partner's upload: a pattern cannot stop a unique
    # made-up code per record, this can.
    max_distinct: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _says_what_is_allowed(self) -> Domain:
        if self.codes is None and self.pattern is None:
            raise ValueError("give codes (every allowed value) or a pattern (and max_distinct)")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a regular expression: {exc}") from None
        return self

    def problem(self, values: Iterable[str]) -> str:
        """Why ``values`` may not leave, or ``""`` when every one is in the domain.

        The reason gives counts only: the values themselves may be exactly what must not leak.

        Examples
        --------
        >>> Domain(pattern="E05[0-9]{6}").problem(["E05000001", "", "Smith"])
        '1 of 3 values are outside the domain (pattern E05[0-9]{6})'
        """
        values = list(values)
        given = [v for v in values if v != ""]
        codes = set(self.codes) if self.codes is not None else None
        rule = re.compile(self.pattern) if self.pattern is not None else None
        outside = sum(
            1
            for v in given
            if (codes is not None and v not in codes)
            or (rule is not None and not rule.fullmatch(v))
        )
        if outside:
            said = f"pattern {self.pattern}" if codes is None else f"{len(codes)} codes"
            return f"{outside} of {len(values)} values are outside the domain ({said})"
        distinct = len(set(given))
        if self.max_distinct is not None and distinct > self.max_distinct:
            return f"{distinct} distinct values, more than the domain's max_distinct {self.max_distinct}"
        return ""


#: How a node derives an attribute from its own data: only the derived value leaves.
Derivation = Literal[
    "value", "category", "age_band", "lookup", "event_count", "event_any", "event_latest"
]
#: Derivations over one of the partner's event tables (node.toml [[source.events]]).
EVENT_DERIVATIONS = ("event_count", "event_any", "event_latest")
#: The label of a person with no event, for event_latest.
NO_EVENT = "none"


class Attribute(_Strict):
    """``[[attributes]]``: a value one partner's node derives per record and may share.

    Only attributes declared here can leave a node, only from the partner named, and only with
    values in their domain. A product names the attributes it needs.
    """

    name: Name
    partner: Name
    title: str = ""
    # value: the column as it is; category: a mapping of the column's values to categories;
    # age_band: a date column as the age band at `at`; lookup: the column's values looked up in a
    # table the node holds (node.toml [source.lookups]). Over an event table (many rows per
    # person): event_count, the number of events in the window before `at`, as a band;
    # event_any, "yes" or "no"; event_latest, the days from the latest event to `at`, as a band,
    # or "none".
    derive: Derivation = "value"
    categories: dict[str, str] | None = None
    at: date | None = None
    bands: list[int] | None = Field(default=None, min_length=1)
    lookup: Name | None = None
    # Event derivations: the event table, the event types counted (all when empty) and the
    # window before `at` in days (all earlier events when not given; it bounds event_latest too).
    events: Name | None = None
    event_types: list[str] = Field(default_factory=list)
    window_days: int | None = Field(default=None, ge=1)
    domain: Domain | None = None

    @model_validator(mode="after")
    def _complete(self) -> Attribute:
        needs = {
            "category": ("categories",),
            "age_band": ("at", "bands"),
            "lookup": ("lookup",),
            "event_count": ("events", "at", "bands"),
            "event_any": ("events", "at"),
            "event_latest": ("events", "at", "bands"),
        }
        for key in needs.get(self.derive, ()):
            if getattr(self, key) is None:
                raise ValueError(f"derive = '{self.derive}' needs {key}")
        if self.derive not in EVENT_DERIVATIONS:
            stray = [
                key
                for key in ("events", "event_types", "window_days")
                if getattr(self, key) not in (None, [])
            ]
            if stray:
                raise ValueError(
                    f"{', '.join(stray)} only apply to the event derivations "
                    f"({', '.join(EVENT_DERIVATIONS)}), not derive = '{self.derive}'"
                )
        if self.bands is not None and (
            self.bands[0] != 0 or any(b <= a for a, b in itertools.pairwise(self.bands))
        ):
            raise ValueError("bands must start at 0 and rise, e.g. [0, 18, 65]")
        if self.derive in ("value", "lookup") and self.domain is None:
            raise ValueError(
                f"derive = '{self.derive}' needs a domain (codes, or a pattern and max_distinct): "
                "what may leave the node must be stated"
            )
        return self

    def problem(self, values: list[str]) -> str:
        """Why ``values`` may not leave as this attribute, or ``""``: the declared domain, and
        for a category or age band its labels."""
        labels = self.labels
        implied = None if labels is None else Domain(codes=labels)
        for domain in (self.domain, implied):
            problem = domain.problem(values) if domain is not None else ""
            if problem:
                return f"attribute '{self.name}': {problem}"
        return ""

    @property
    def labels(self) -> list[str] | None:
        """The values a category or age band can take (None: the domain says)."""
        if self.derive == "category" and self.categories is not None:
            return sorted(set(self.categories.values()))
        if self.derive in ("age_band", "event_count") and self.bands is not None:
            return band_labels(self.bands)
        if self.derive == "event_latest" and self.bands is not None:
            return [*band_labels(self.bands), NO_EVENT]
        if self.derive == "event_any":
            return ["no", "yes"]
        return None


def band_labels(bands: list[int]) -> list[str]:
    """The labels of whole-number bands starting at ``bands`` (ages, counts, days).

    Examples
    --------
    >>> band_labels([0, 18, 65])
    ['0-17', '18-64', '65+']
    >>> band_labels([0, 1, 3])
    ['0', '1-2', '3+']
    """
    inner = [f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(bands)]
    return [*inner, f"{bands[-1]}+"]


class AreaSource(_Strict):
    partner: Name
    attribute: Name


#: A product's dimension naming the number of partners that know an entity.
PARTNERS = "partners"
#: At most this many dimensions in one table.
MAX_DIMENSIONS = 3


class AttributeRef(_Strict):
    """An attribute by its partner and name, as a product names it: ``"council.ward"``."""

    partner: Name
    name: Name

    @classmethod
    def parse(cls, text: str) -> AttributeRef:
        partner, dot, name = text.partition(".")
        if not dot:
            raise ValueError(f"'{text}': name an attribute as '<partner>.<attribute>'")
        return cls(partner=partner, name=name)

    def __str__(self) -> str:
        return f"{self.partner}.{self.name}"


class Cohort(_Strict):
    """Which linked entities a product counts: known to at least ``min_partners`` partners, and
    with every attribute in ``where`` among its listed values."""

    min_partners: int = Field(default=1, ge=1)
    where: dict[str, list[str]] = Field(default_factory=dict)


class Indicator(_Strict):
    """``[[products.indicators]]``: points a prioritised list gives an entity for one attribute's
    values, and the group of indicators they count towards."""

    attribute: str
    points: dict[str, int] = Field(min_length=1)
    group: Name

    @field_validator("points")
    @classmethod
    def _positive(cls, points: dict[str, int]) -> dict[str, int]:
        if any(not 1 <= p <= 100 for p in points.values()):
            raise ValueError("points are whole numbers from 1 to 100")
        return points


#: Products that release records (each to its owner only), not counts.
RECORD_KINDS = ("list", "alert")
#: A table of one partner's own records, computed and controlled at its node: only the table
#: leaves it, never a value per record.
LOCAL = "local"


#: The GeoJSON feature property a map reads each area's code from, unless the product says.
DEFAULT_AREA_PROPERTY = "code"
#: The derivations whose values are area codes, which a map can draw (not bands or yes/no).
AREA_DERIVATIONS = ("value", "lookup", "category")
_MAP_KEYS = ("boundaries", "area_property", "boundaries_fingerprint")


class Product(_Strict):
    """``[[products]]``: a table computed over the linked population, and who receives it.

    ``count``: entities by ``by`` (1 to 3 dimensions: ``"partners"``, the number of partners that
    know an entity, or ``"<partner>.<attribute>"``) in the ``cohort``. ``rate``: the same, and the
    share of them that meet ``numerator`` too. ``map``: a count by one area attribute (a rate
    with a ``numerator``), drawn on the ``boundaries`` the coordinator holds.
    ``partner_count_by_area``: the earlier form of ``count`` by
    ``[<area partner>.<attribute>, "partners"]``.

    ``local``: a count of the ``owner``'s own records by 1 to 3 of its own attributes (its
    caseload by ward, say), with a cohort of its own attributes only. It needs no linkage and no
    other partner: the owner's node tabulates it, puts it through disclosure control, and sends
    only the controlled table.

    Record-level products go to their ``owner`` alone, as the owner's own records: ``list``, the
    owner's records in the cohort ranked by a score from ``indicators`` (only those scoring at
    least ``score_bands[0]``); ``alert``, the owner's records of entities that meet the cohort
    now and did not at the last release.
    """

    id: Name
    kind: Literal["partner_count_by_area", "count", "rate", "map", "list", "alert", "local"]
    title: str
    recipients: list[Name] = Field(min_length=1)
    area: AreaSource | None = None
    by: list[str] = Field(default_factory=list, max_length=MAX_DIMENSIONS)
    cohort: Cohort = Field(default_factory=Cohort)
    numerator: dict[str, list[str]] | None = None
    owner: Name | None = None
    indicators: list[Indicator] = Field(default_factory=list)
    score_bands: list[int] | None = Field(default=None, min_length=1)
    # A list also says which groups of indicators gave each record its points.
    show_groups: bool = False
    # An attribute the recipient must not be able to infer from a record's presence or row:
    # each group of rows that look alike carries at least [disclosure] l_diversity of its values.
    sensitive: str | None = None
    # map: the name of the boundary set its areas are drawn on (coordinator.toml [boundaries]
    # says where the file is), the feature property holding each area's code (default "code"),
    # and optionally the file's fingerprint, so every party knows which boundaries were drawn.
    boundaries: Name | None = None
    area_property: str | None = Field(default=None, min_length=1, max_length=200)
    boundaries_fingerprint: Fingerprint | None = None

    @model_validator(mode="after")
    def _complete(self) -> Product:
        if self.kind != "map":
            given = [key for key in _MAP_KEYS if getattr(self, key) is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: only for kind = 'map'")
        if self.kind == "partner_count_by_area":
            if self.area is None:
                raise ValueError("kind = 'partner_count_by_area' needs area")
            return self
        if self.kind in RECORD_KINDS:
            return self._records()
        if self.kind == "map":
            self._a_map()
        if self.kind == LOCAL:
            self._a_local()
        if not self.by:
            raise ValueError(f"kind = '{self.kind}' needs by: 1 to {MAX_DIMENSIONS} dimensions")
        if len(set(self.by)) != len(self.by):
            raise ValueError("by names a dimension twice")
        if self.kind == "rate" and self.numerator is None:
            raise ValueError("kind = 'rate' needs a numerator")
        if self.kind == "count" and self.numerator is not None:
            raise ValueError("a numerator is for kind = 'rate' or 'map'; a count has none")
        for text in [*self.by, *self.cohort.where, *(self.numerator or {})]:
            if text != PARTNERS:
                AttributeRef.parse(text)
        return self

    def _records(self) -> Product:
        if self.owner is None:
            raise ValueError(
                f"kind = '{self.kind}' needs owner: the partner whose records it lists"
            )
        if self.recipients != [self.owner]:
            raise ValueError(
                f"a {self.kind} goes to its owner alone: recipients = ['{self.owner}']"
            )
        if self.by or self.numerator is not None or self.area is not None:
            raise ValueError(f"kind = '{self.kind}' takes no by, numerator or area")
        if self.kind == "list":
            if not self.indicators or self.score_bands is None:
                raise ValueError("kind = 'list' needs indicators and score_bands")
            if self.score_bands[0] < 1 or any(
                b <= a for a, b in itertools.pairwise(self.score_bands)
            ):
                raise ValueError("score_bands must start at 1 or more and rise, e.g. [2, 5, 8]")
        elif self.indicators or self.score_bands is not None or self.show_groups:
            raise ValueError("indicators, score_bands and show_groups are for kind = 'list'")
        elif not self.cohort.where and self.cohort.min_partners < 2:
            raise ValueError(
                "an alert needs a rule: cohort.where, or cohort.min_partners of 2 or more"
            )
        for text in [*self.cohort.where, *(i.attribute for i in self.indicators)]:
            AttributeRef.parse(text)
        if self.sensitive is not None:
            AttributeRef.parse(self.sensitive)
        return self

    def _a_local(self) -> None:
        if self.owner is None:
            raise ValueError(
                "kind = 'local' needs owner: the partner whose node computes it from its records"
            )
        if self.area is not None or self.numerator is not None:
            raise ValueError("kind = 'local' takes by and cohort.where, not area or numerator")
        if self.cohort.min_partners != 1:
            raise ValueError(
                "kind = 'local' counts one partner's records, unlinked: cohort.min_partners "
                "cannot apply"
            )
        others = [
            t
            for t in [*self.by, *self.cohort.where]
            if t == PARTNERS or AttributeRef.parse(t).partner != self.owner
        ]
        if others:
            raise ValueError(
                f"kind = 'local' is computed from {self.owner}'s records alone; "
                f"{', '.join(others)} is not one of its attributes"
            )

    @property
    def score_labels(self) -> list[str]:
        """A list's score bands as its rows name them, e.g. ``['2-4', '5-7', '8+']``."""
        return band_labels(self.score_bands) if self.score_bands else []

    def _a_map(self) -> None:
        if self.area is not None:
            raise ValueError("kind = 'map' takes its area from by, e.g. by = [\"council.ward\"]")
        if len(self.by) != 1 or self.by[0] == PARTNERS:
            raise ValueError(
                "kind = 'map' needs by to name exactly one area attribute, e.g. "
                'by = ["council.ward"]'
            )
        if self.boundaries is None:
            raise ValueError(
                "kind = 'map' needs boundaries: the name of the boundary set to draw on, which "
                "the coordinator's coordinator.toml [boundaries] gives a GeoJSON file for"
            )

    @property
    def map_area_property(self) -> str:
        """The GeoJSON feature property a map's area codes are read from."""
        return self.area_property or DEFAULT_AREA_PROPERTY

    @property
    def dimensions(self) -> list[str]:
        """The table's dimensions, ``"partners"`` or ``"<partner>.<attribute>"``."""
        if self.area is not None:
            return [f"{self.area.partner}.{self.area.attribute}", PARTNERS]
        return list(self.by)

    def attributes(self) -> list[AttributeRef]:
        """Every attribute the product needs, in order of first use, each once."""
        texts = [
            *self.dimensions,
            *self.cohort.where,
            *(self.numerator or {}),
            *(i.attribute for i in self.indicators),
            *([self.sensitive] if self.sensitive else []),
        ]
        seen = dict.fromkeys(t for t in texts if t != PARTNERS)
        return [AttributeRef.parse(t) for t in seen]


#: The smallest ``min_cell`` a project may set without ``allow_weak_disclosure``: a published count
#: of 1 or 2 points at one or two people.
MIN_SAFE_CELL = 3


class Disclosure(_Protective):
    min_cell: int = Field(default=10, ge=1)
    rounding_base: int = Field(default=5, ge=1)
    # Record-level products (lists, alerts): every group of rows that look alike has at least
    # k_anonymity rows, and at least l_diversity values of the product's sensitive attribute.
    k_anonymity: int = Field(default=5, ge=2)
    l_diversity: int = Field(default=2, ge=1)
    # Lets min_cell go below MIN_SAFE_CELL. Only for test projects on synthetic data: the DPOs
    # must sign a project that says so.
    allow_weak_disclosure: bool = False

    @model_validator(mode="after")
    def _min_cell_protects(self) -> Disclosure:
        if self.min_cell < MIN_SAFE_CELL and not self.allow_weak_disclosure:
            raise ValueError(
                f"min_cell {self.min_cell} would publish counts of fewer than {MIN_SAFE_CELL} "
                f"people; set min_cell to at least {MIN_SAFE_CELL} (10 is usual), or, for a test "
                "project on synthetic data only, allow_weak_disclosure = true in [disclosure]"
            )
        return self


class Retention(_Protective):
    clk_days: int = Field(default=30, ge=0)


class Rounds(_Protective):
    """``[rounds]``: how a linkage round ends."""

    # Release products as soon as they pass disclosure control. Off by default: the round waits in
    # awaiting_release until an operator has reviewed its reports and runs
    # `oda-fed coordinator release ROUND`.
    auto_release: bool = False
    # A round not released this many hours after it started is cancelled, so a partner that never
    # connects cannot hold up later rounds.
    deadline_hours: float = Field(default=168.0, gt=0, le=24 * 366)


class Project(_Strict):
    """The project agreement: the information sharing protocol as code."""

    version: Literal[1] = PROJECT_FORMAT_VERSION
    name: Name
    title: str
    purpose: str
    legal_gateway: str
    partners: list[Partner] = Field(min_length=2)
    linkage: Linkage
    attributes: list[Attribute] = Field(default_factory=list)
    products: list[Product] = Field(default_factory=list)
    disclosure: Disclosure = Field(default_factory=Disclosure)
    retention: Retention = Field(default_factory=Retention)
    rounds: Rounds = Field(default_factory=Rounds)

    @model_validator(mode="after")
    def _consistent(self) -> Project:
        ids = [p.id for p in self.partners]
        if len(set(ids)) != len(ids):
            raise ValueError("partner ids must be unique")
        declared = [(a.partner, a.name) for a in self.attributes]
        if len(set(declared)) != len(declared):
            raise ValueError("an attribute is declared twice for the same partner")
        for a in self.attributes:
            if a.partner not in ids:
                raise ValueError(f"attribute '{a.name}': partner '{a.partner}' is not a partner")
        for product in self.products:
            for ref in product.attributes():
                if ref.partner not in ids:
                    raise ValueError(
                        f"product '{product.id}': '{ref.partner}' in '{ref}' is not a partner"
                    )
                if (ref.partner, ref.name) not in declared:
                    raise ValueError(
                        f"product '{product.id}': attribute '{ref.name}' of '{ref.partner}' is "
                        "not declared in [[attributes]] (with the domain of values that may leave "
                        "the node)"
                    )
            if product.owner is not None and product.owner not in ids:
                raise ValueError(
                    f"product '{product.id}': owner '{product.owner}' is not a partner"
                )
            if product.kind == "alert" and not self.linkage.stable_entity_ids:
                raise ValueError(
                    f"product '{product.id}': an alert finds entities new since the last "
                    "release, which needs [linkage] stable_entity_ids = true"
                )
            if product.kind == "map":
                self._map_draws_an_area(product)
            unknown = [r for r in product.recipients if r not in ids and r != "coordinator"]
            if unknown:
                raise ValueError(
                    f"product '{product.id}': recipients {unknown} are neither partners nor "
                    "'coordinator'"
                )
        pins: dict[str, set[str]] = {}
        for product in self.products:
            if product.boundaries is not None and product.boundaries_fingerprint is not None:
                pins.setdefault(product.boundaries, set()).add(product.boundaries_fingerprint)
        for name, pinned in sorted(pins.items()):
            if len(pinned) > 1:
                raise ValueError(
                    f"products pin boundaries '{name}' to {len(pinned)} different fingerprints: "
                    "one boundary set is one file; pin the same fingerprint in each"
                )
        return self

    def _map_draws_an_area(self, product: Product) -> None:
        ref = AttributeRef.parse(product.by[0])
        attribute = self.attribute(partner=ref.partner, name=ref.name)
        if attribute.derive not in AREA_DERIVATIONS:
            raise ValueError(
                f"product '{product.id}': a map draws areas, and '{ref}' is derived by "
                f"{attribute.derive}; name an area code attribute (derive = "
                f"{', '.join(AREA_DERIVATIONS)}) whose values are in the boundary file"
            )

    @property
    def partner_ids(self) -> list[str]:
        return [p.id for p in self.partners]

    @property
    def dealer(self) -> str:
        """The partner whose node makes the linkage secret and wraps it for the others when the
        nodes agree it through the coordinator: the first partner listed."""
        return self.partners[0].id

    def partner(self, partner_id: str) -> Partner:
        for p in self.partners:
            if p.id == partner_id:
                return p
        raise ConfigError(f"'{partner_id}' is not a partner in project '{self.name}'")

    def min_cell(self, partners: Iterable[str] | None = None) -> int:
        """The smallest publishable count for a product using ``partners``' data (all by
        default): the project's ``[disclosure] min_cell`` or a partner's own, whichever is
        strictest."""
        chosen = set(self.partner_ids if partners is None else partners)
        own = [p.min_cell for p in self.partners if p.id in chosen and p.min_cell is not None]
        return max([self.disclosure.min_cell, *own])

    def attribute(self, *, partner: str, name: str) -> Attribute:
        """The attribute ``name`` that ``partner`` derives (declared in ``[[attributes]]``)."""
        for a in self.attributes:
            if a.partner == partner and a.name == name:
                return a
        raise ConfigError(f"project '{self.name}' declares no attribute '{name}' of '{partner}'")

    def product(self, product_id: str) -> Product:
        """The product ``product_id`` (declared in ``[[products]]``)."""
        for p in self.products:
            if p.id == product_id:
                return p
        raise ConfigError(f"project '{self.name}' declares no product '{product_id}'")

    def attribute_allowed(self, *, partner: str, product_id: str, attribute: str) -> bool:
        """Whether the project lets ``partner`` share ``attribute`` for ``product_id``, a value
        per record. Never for a ``local`` product: only its table leaves the node."""
        if not (re.fullmatch(NAME_PATTERN, partner) and re.fullmatch(NAME_PATTERN, attribute)):
            return False  # no declared attribute has such a name (it came from the wire)
        wanted = AttributeRef(partner=partner, name=attribute)
        return any(
            p.id == product_id and p.kind != LOCAL and wanted in p.attributes()
            for p in self.products
        )


class LoadedProject(_Strict):
    """A project with the path and fingerprint it was loaded from."""

    path: Path
    fingerprint: Fingerprint
    project: Project


# --- node.toml ----------------------------------------------------------------------------------


class TlsFiles(_Strict):
    ca: Path
    cert: Path
    key: Path


class EventTable(_Strict):
    """``[[source.events]]``: a partner's table of events (incidents, referrals, inspections),
    read only at its node: only the attributes the project derives from it leave."""

    name: Name
    path: Path
    # The column naming the record of the extract each event belongs to.
    record_id: str
    # The event's date, and optionally its type (for attributes counting some types only).
    date: str
    type: str | None = None
    date_format: str | None = None


#: The extract formats a node reads (node.toml ``[source] format``).
SOURCE_FORMATS = ("csv", "parquet", "xlsx", "sql")


class NodeSource(_Strict):
    path: Path | None = None  # the extract file; none for format = "sql"
    # One of SOURCE_FORMATS; left out, the file's suffix says (.parquet/.pq, .xlsx, else csv).
    format: str | None = None
    # sql only: a SQLAlchemy URL without its password, and the query (or a file holding it). The
    # password comes from password_file (owner-only) or libpq's own PGPASSWORD or ~/.pgpass.
    url: str | None = None
    query: str | None = None
    query_file: Path | None = None
    password_file: Path | None = None
    # CSV only: the text encoding (a UTF-8 byte-order mark is accepted) and the column delimiter.
    # Exports from Excel or Windows systems are often cp1252, and ';'-separated. For sql, the
    # encoding PostgreSQL is asked to send text in (a SQL_ASCII database's bytes are read as it).
    encoding: str = "utf-8"
    delimiter: str = ","
    # xlsx only: the worksheet holding the extract (default: the first).
    sheet: str | None = None
    record_id: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    attributes: dict[str, str] = Field(default_factory=dict)
    date_format: str | None = None
    on_invalid: Literal["error", "missing", "keep"] = "error"
    # Lookup tables for attributes the project derives by lookup: name -> CSV file with two
    # columns (the value as it is in the extract, and what it becomes). They stay on the node.
    lookups: dict[Name, Path] = Field(default_factory=dict)
    # Event tables (many rows per person) for attributes the project derives from events.
    events: list[EventTable] = Field(default_factory=list)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and value not in SOURCE_FORMATS:
            raise ValueError(
                f"format '{value}' is not supported: use one of {', '.join(SOURCE_FORMATS)}, "
                "or leave it out to go by the file's suffix (save an old .xls workbook as .xlsx)"
            )
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown encoding '{value}': give a Python codec name, such as 'utf-8' or "
                "'cp1252' (Windows and Excel exports)"
            ) from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError(
                f"the delimiter must be one character, such as ',' or ';' (a tab is \"\\t\"), "
                f"not {value!r}"
            )
        return value

    #: node.toml names its extract; an ``analyse --sources`` file may leave it to the command line.
    needs_path: ClassVar[bool] = True

    @model_validator(mode="after")
    def _file_or_sql(self) -> NodeSource:
        sql = {"url": self.url, "query": self.query, "query_file": self.query_file,
               "password_file": self.password_file}  # fmt: skip
        if self.format != "sql":
            given = [key for key, value in sql.items() if value is not None]
            if given:
                raise ValueError(f'{", ".join(given)}: only for format = "sql"')
            if self.path is None and self.needs_path:
                raise ValueError(
                    'give path (the extract file), or format = "sql" with url and query'
                )
            return self
        if self.path is not None:
            raise ValueError('path is for files: a format = "sql" source reads url and query')
        if self.url is None or (self.query is None) == (self.query_file is None):
            raise ValueError('format = "sql" needs url, and either query or query_file')
        # Never echo the URL: it may hold the very password that must not be there.
        if re.match(r"[^:/]+://[^/@?#]*:[^/@?#]*@", self.url):
            raise ValueError(
                "url holds a password: take it out of node.toml and put it in password_file "
                "(readable by the node's user only), or in PGPASSWORD or ~/.pgpass"
            )
        return self

    @model_validator(mode="after")
    def _unique_events(self) -> NodeSource:
        names = [table.name for table in self.events]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(
                f"[[source.events]] names {', '.join(twice)} more than once: give each table "
                "its own name"
            )
        return self


class AnalysisSource(NodeSource):
    """A partner's ``[source.<partner>]`` in an ``oda-fed analyse --sources`` file: the keys of
    node.toml's ``[source]``; ``path`` may be left out when the file is given on the command
    line."""

    needs_path: ClassVar[bool] = False


class AnalysisSources(_Strict):
    """An ``oda-fed analyse --sources`` file: what each partner's node.toml would say of its
    extract (columns, attributes, lookups, event tables), for analysing files in one process."""

    source: dict[Name, AnalysisSource] = Field(default_factory=dict)


class CoordinatorAddress(_Strict):
    address: str
    # The name the coordinator's certificate carries, when it differs from the host in ``address``.
    server_name: str | None = None


class NodeConfig(_Strict):
    partner: Name
    project: Path
    project_fingerprint: Fingerprint
    # A linkage secret the partners exchanged themselves. Leave it out and the nodes agree one
    # through the coordinator (which relays only ciphertext) when they first run.
    secret_file: Path | None = None
    workdir: Path
    coordinator: CoordinatorAddress
    tls: TlsFiles
    source: NodeSource
    audit_dir: Path | None = None
    # The node's agreement key and agreed secrets, owner-only (default: <workdir>/keys).
    keys_dir: Path
    chunk_records: int = Field(default=CHUNK_RECORDS, ge=1, le=1_000_000)
    # Serve Prometheus metrics on this HOST:PORT (plain HTTP, unauthenticated): off when unset.
    metrics: MetricsAddress | None = None
    log_format: LogFormat = "text"

    @model_validator(mode="before")
    @classmethod
    def _default_keys_dir(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("keys_dir") is None and "workdir" in data:
            return {**data, "keys_dir": Path(str(data["workdir"])) / "keys"}
        return data

    @property
    def audit_path(self) -> Path:
        return (self.audit_dir or self.workdir / "audit") / f"{self.partner}.jsonl"


# --- coordinator.toml ---------------------------------------------------------------------------


class Operator(_Strict):
    cert: Path
    key: Path


class CoordinatorConfig(_Strict):
    project: Path
    project_fingerprint: Fingerprint
    listen: str = "127.0.0.1:7443"
    # Host name the operator CLI uses to check the coordinator's certificate.
    server_name: str = "localhost"
    state_dir: Path
    # Keep the database on PostgreSQL (postgresql+psycopg://USER@HOST[:PORT]/DATABASE) instead of
    # SQLite in state_dir. Never with a password: that is read from database_password_file, or
    # libpq's PGPASSWORD / ~/.pgpass.
    database: str | None = None
    database_password_file: Path | None = None
    output_dir: Path
    audit_dir: Path | None = None
    tls: TlsFiles
    operator: Operator | None = None
    # The largest message it reads or sends, in MiB. Unset, it reads no message larger than a
    # node of the project needs (a chunk of its CLKs, of attribute values, or a local table) and
    # sends up to 32 MiB: a smaller read limit bounds the memory that uploads at once can take.
    max_message_mb: int | None = Field(default=None, ge=1, le=512)
    # Boundary files (GeoJSON) the project's maps are drawn on: boundary set name -> file.
    # Public geography, never personal data; the project names the set, this says where it is.
    boundaries: dict[Name, Path] = Field(default_factory=dict)
    # The partnership CA's revocation list (its ca.crl, copied here): calls from a certificate it
    # lists are refused. Read again whenever the file changes, or on SIGHUP.
    revocation_list: Path | None = None
    # Serve Prometheus metrics on this HOST:PORT (plain HTTP, unauthenticated): off when unset.
    # Keep it on localhost or the ODA's monitoring network.
    metrics: MetricsAddress | None = None
    log_format: LogFormat = "text"
    # Match on a Dask cluster: its scheduler (tcp://HOST:8786, or tls://, which uses the
    # certificates above), or "local[:N]". Unset: in this process. See the runbook.
    dask_scheduler: DaskAddress | None = None
    # A folder every Dask worker reads: each pair of sources' CLKs wait there while it is
    # matched. Default: state_dir/dask, fine for workers on this machine.
    dask_shared_dir: Path | None = None

    @property
    def audit_path(self) -> Path:
        return (self.audit_dir or self.state_dir / "audit") / "coordinator.jsonl"

    @field_validator("database")
    @classmethod
    def _postgres_without_password(cls, url: str | None) -> str | None:
        scheme, _, rest = (url or "").partition("://")
        if url is not None and scheme not in ("postgresql", "postgresql+psycopg"):
            raise ValueError(
                "expected postgresql+psycopg://USER@HOST[:PORT]/DATABASE (leave it unset for "
                "SQLite in state_dir)"
            )
        if ":" in rest.rpartition("@")[0]:
            raise ValueError(
                "the URL carries a password: put it in database_password_file (or PGPASSWORD / "
                "~/.pgpass), never in coordinator.toml"
            )
        return url


# --- loading ------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def metrics_address(text: str) -> str:
    """``text`` if it is a metrics address (``HOST:PORT``), as ``--metrics`` takes it.

    Examples
    --------
    >>> metrics_address("127.0.0.1:9464")
    '127.0.0.1:9464'
    """
    if not re.fullmatch(METRICS_PATTERN, text):
        raise ConfigError(f"--metrics '{text}' is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return text


def fingerprint_bytes(data: bytes) -> str:
    """Project fingerprint of file contents: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _read_toml(path: Path) -> tuple[bytes, dict]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return raw, tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _explain(path: Path, exc: ValidationError) -> ConfigError:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against the example config)"
        elif err["type"] == "string_pattern_mismatch" and "sha256" in str(err.get("ctx", {})):
            msg = "expected 'sha256:' followed by 64 lower-case hex digits"
        elif err["type"] == "string_pattern_mismatch":
            msg = "expected lower-case letters, digits, '-' or '_' (at most 63), e.g. 'council'"
        lines.append(f"{path}: key '{key}': {msg}")
    return ConfigError("\n".join(lines))


def _resolve_paths(data: dict, base: Path, keys: tuple[tuple[str | int, ...], ...]) -> None:
    for key in keys:
        node: object = data
        for part in key[:-1]:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                node = None
            if node is None:
                break
        if isinstance(node, dict) and isinstance(node.get(key[-1]), str):
            node[key[-1]] = str((base / node[key[-1]]).resolve())


def _validate(model: type[M], path: Path, data: dict) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _explain(path, exc) from None


def load_project(path: Path) -> LoadedProject:
    """Read and validate a project file and compute its fingerprint.

    Examples
    --------
    >>> loaded = load_project(Path("project.toml"))  # doctest: +SKIP
    >>> loaded.fingerprint  # doctest: +SKIP
    'sha256:…'
    """
    path = Path(path)
    raw, data = _read_toml(path)
    project = _validate(Project, path, data)
    return LoadedProject(path=path.resolve(), fingerprint=fingerprint_bytes(raw), project=project)


def load_pinned_project(path: Path, *, pinned: str, pinned_in: Path) -> LoadedProject:
    """Load a project and refuse it unless its fingerprint equals the one pinned by the DPO."""
    loaded = load_project(path)
    if loaded.fingerprint != pinned:
        from oda_fed.errors import ProjectMismatchError

        raise ProjectMismatchError(
            f"{path}: project fingerprint {loaded.fingerprint} differs from the one pinned in "
            f"{pinned_in} ({pinned}). Use the project file your DPO approved, or have the DPO pin "
            "the new fingerprint."
        )
    return loaded


_NODE_PATHS = (
    ("project",),
    ("secret_file",),
    ("workdir",),
    ("audit_dir",),
    ("keys_dir",),
    ("tls", "ca"),
    ("tls", "cert"),
    ("tls", "key"),
)
_COORDINATOR_PATHS = (
    ("project",),
    ("revocation_list",),
    ("state_dir",),
    ("database_password_file",),
    ("output_dir",),
    ("audit_dir",),
    ("tls", "ca"),
    ("tls", "cert"),
    ("tls", "key"),
    ("operator", "cert"),
    ("operator", "key"),
)


def _source_paths(source: object, at: tuple[str, ...]) -> tuple[tuple[str | int, ...], ...]:
    """The paths of a ``[source]`` table at ``at``: its extract, lookup tables and event tables."""
    if not isinstance(source, dict):
        return ()
    lookups = source.get("lookups") if isinstance(source.get("lookups"), dict) else {}
    events = source.get("events") if isinstance(source.get("events"), list) else []
    return (
        (*at, "path"),
        (*at, "query_file"),
        (*at, "password_file"),
        *((*at, "lookups", k) for k in lookups),
        *((*at, "events", i, "path") for i in range(len(events))),
    )


def load_node_config(path: Path) -> NodeConfig:
    """Read and validate ``node.toml``; relative paths resolve against its folder."""
    path = Path(path)
    _, data = _read_toml(path)
    paths = _NODE_PATHS + _source_paths(data.get("source"), ("source",))
    _resolve_paths(data, path.resolve().parent, paths)
    return _validate(NodeConfig, path, data)


def load_analysis_sources(path: Path) -> AnalysisSources:
    """Read and validate an ``oda-fed analyse --sources`` file; relative paths resolve against
    its folder."""
    path = Path(path)
    _, data = _read_toml(path)
    sources = data.get("source") if isinstance(data.get("source"), dict) else {}
    paths = tuple(p for k, v in sources.items() for p in _source_paths(v, ("source", k)))
    _resolve_paths(data, path.resolve().parent, paths)
    return _validate(AnalysisSources, path, data)


def load_coordinator_config(path: Path) -> CoordinatorConfig:
    """Read and validate ``coordinator.toml``; relative paths resolve against its folder."""
    path = Path(path)
    _, data = _read_toml(path)
    boundaries = data.get("boundaries") if isinstance(data.get("boundaries"), dict) else {}
    _resolve_paths(
        data,
        path.resolve().parent,
        _COORDINATOR_PATHS + tuple(("boundaries", name) for name in boundaries),
    )
    return _validate(CoordinatorConfig, path, data)


def check_name(value: str, what: str) -> str:
    """Validate a partner/product/round name outside a model (CLI arguments)."""
    if not re.match(NAME_PATTERN, value):
        raise ConfigError(f"{what} '{value}': expected lower-case letters, digits, '-' or '_'")
    return value

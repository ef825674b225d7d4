"""How records are linked: one typed value, made once from a project and handed to the engine.

A project's ``[linkage]`` section is what the partners signed; :class:`LinkSettings` is what the
engine reads. The translation happens in one place (:func:`oda_fed.linkage.settings_for`), as
Splink turns its ``SettingsCreator`` into ``Settings`` once, so adding a linkage option touches
the project model, this class, that translation and the code that uses the option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from oda_fed.matching.blocking import Blocking
from oda_fed.matching.candidates import MatchingInputError

#: How a conflict between keyed tokens and CLK similarity is settled (see
#: :func:`oda_fed.matching.link.apply_tokens`).
TokenRule = Literal["token", "clk"]

#: Records of the smaller source whose best scores the quality estimate fits, at most.
QUALITY_SAMPLE = 5_000


@dataclass(frozen=True)
class LinkSettings:
    """The engine's linkage settings.

    Attributes
    ----------
    threshold : float or "auto"
        Dice similarity a pair must reach to be a candidate, or ``"auto"``: the threshold that
        maximises the F1 estimated without truth (:mod:`oda_fed.matching.quality`).
    one_per_source : bool
        At most one record of a source in an entity.
    token_rule : {"token", "clk"}
        Which side wins when keyed tokens and CLKs disagree.
    blocking : Blocking
        All pairs or LSH blocking, per pair of sources.
    quality_sample : int
        Records of the smaller source of each pair whose best scores the estimate fits.
    method, match_probability, fields
        Field-aware linkage (see the attributes' comments).

    Examples
    --------
    >>> LinkSettings(threshold=0.8).threshold
    0.8
    >>> LinkSettings(threshold=1.5)
    Traceback (most recent call last):
    ...
    oda_fed.matching.candidates.MatchingInputError: threshold must be in (0, 1] or "auto", got 1.5
    """

    threshold: float | Literal["auto"] = "auto"
    one_per_source: bool = True
    token_rule: TokenRule = "token"
    blocking: Blocking = field(default_factory=Blocking)
    quality_sample: int = QUALITY_SAMPLE
    #: "clk": link on whole-record CLK similarity. "fields": also compare field evidence and
    #: link by match probability (:mod:`oda_fed.matching.link_fields`); ``threshold`` is then
    #: the CLK similarity candidates need.
    method: Literal["clk", "fields"] = "clk"
    #: The match probability a pair needs to be linked, with ``method = "fields"``.
    match_probability: float = 0.5
    #: The linkage fields as ``(name, type)``, which field evidence is compared by.
    fields: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        t = self.threshold
        if t != "auto" and (
            isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 1
        ):
            raise MatchingInputError(f'threshold must be in (0, 1] or "auto", got {t!r}')
        if self.token_rule not in ("token", "clk"):
            raise MatchingInputError(
                f'token rule must be "token" or "clk", got {self.token_rule!r}'
            )
        if self.method not in ("clk", "fields"):
            raise MatchingInputError(f'method must be "clk" or "fields", got {self.method!r}')
        if not 0 < self.match_probability < 1:
            raise MatchingInputError(
                f"match_probability must be in (0, 1), got {self.match_probability!r}"
            )
        if self.method == "fields" and not self.fields:
            raise MatchingInputError('method = "fields" needs the linkage fields')
        sample = self.quality_sample
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
            raise MatchingInputError(
                f"the quality sample must be a whole number >= 1, got {sample!r}"
            )

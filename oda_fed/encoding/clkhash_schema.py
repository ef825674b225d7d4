"""clkhash v3 linkage schemas: read, check and hold everything oda-fed needs to match clkhash.

:func:`load_clkhash_schema` reads a linkage schema written for clkhash 0.18.3 (the JSON format
its master schema ``v3.json`` defines) into a :class:`ClkhashSchema`, which
:func:`oda_fed.encoding.clkhash.encode_clkhash` encodes with bit for bit the same result.

What is supported is exactly what clkhash 0.18.3 encodes:

- formats ``string`` (``encoding`` ascii/utf-8/utf-16/utf-32, ``case``, ``minLength``,
  ``maxLength``, or ``pattern``), ``integer`` (``minimum``, ``maximum``), ``date``
  (``format``), ``enum`` (``values``);
- comparisons ``ngram`` (``n``, ``positional``), ``exact``, ``numeric`` (``thresholdDistance``,
  ``resolution``, ``fractional_precision``);
- hashes ``blakeHash`` and ``doubleHash`` (``prevent_singularity``); strategies ``bitsPerToken``
  and ``bitsPerFeature``; ``missingValue`` (``sentinel``, ``replaceWith``);
- ``clkConfig``: ``l``, ``xor_folds``, and ``kdf`` (HKDF with ``hash``, ``salt``, ``info``,
  ``keySize``); features with ``ignored: true``.

Everything else is refused with a :class:`~oda_fed.errors.ConfigError` that names the file, the
path in the schema and the feature, rather than skipped: other schema versions, unknown keys,
types, comparisons, hashes and strategies, and settings clkhash itself fails on. Three keys are
refused because clkhash 0.18.3 silently ignores them, so honouring them would give other bits
than clkhash: ``clkConfig.xorFolds`` (clkhash reads ``xor_folds``; a value of 0 is accepted),
``comparison.fractionalPrecision`` (clkhash reads ``fractional_precision``) and
``format.desiredFormat`` (clkhash always hashes dates as ``%Y%m%d``; its master schema refuses the
key).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from oda_fed.errors import ConfigError

ENCODINGS = ("ascii", "utf-8", "utf-16", "utf-32")
CASES = ("upper", "lower", "mixed")
MAX_HASH_BITS = 1 << 24
"""Longest Bloom filter (``l * 2 ** xor_folds``) accepted: 16 Mibit, 2 MiB per CLK."""
MAX_K = 1 << 16
"""Largest ``bitsPerToken`` or ``bitsPerFeature`` accepted."""
_HKDF_DIGEST_BYTES = {"SHA256": 32, "SHA512": 64}
_BLAKE_MAX_KEY_BYTES = 64
_DEFAULT_KEY_SIZE = 64

# clkhash 0.18.3 ignores these keys; honouring them would give other bits than clkhash does.
_IGNORED_BY_CLKHASH = {
    "xorFolds": "clkhash 0.18.3 ignores 'xorFolds' (it reads 'xor_folds') and does not fold; "
    "remove it, or name it 'xor_folds' to fold",
    "fractionalPrecision": "clkhash 0.18.3 ignores 'fractionalPrecision' (it reads "
    "'fractional_precision') and uses precision 0; rename it to 'fractional_precision'",
    "desiredFormat": "clkhash 0.18.3 always hashes dates as '%Y%m%d' and refuses this key; "
    "remove it",
}


@dataclass(frozen=True)
class StringFormat:
    """``format.type = "string"``: checks on text, and the encoding its tokens are hashed in."""

    encoding: str = "utf-8"
    case: str = "mixed"
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class IntegerFormat:
    """``format.type = "integer"``: a base-10 integer, hashed as Python writes it back."""

    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class DateFormat:
    """``format.type = "date"``: a date read with ``strptime(format)``, hashed as ``%Y%m%d``."""

    format: str


@dataclass(frozen=True)
class EnumFormat:
    """``format.type = "enum"``: one of a set of strings."""

    values: frozenset[str]


Format = StringFormat | IntegerFormat | DateFormat | EnumFormat


@dataclass(frozen=True)
class NgramComparison:
    """Tokens are the n-grams of the value padded with ``n - 1`` spaces each side."""

    n: int
    positional: bool = False


@dataclass(frozen=True)
class ExactComparison:
    """The whole value is one token."""


@dataclass(frozen=True)
class NumericComparison:
    """Tokens are the ``2 * resolution + 1`` grid points around the value."""

    threshold_distance: float
    resolution: int
    fractional_precision: int = 0

    @property
    def distance_interval(self) -> int:
        """Grid spacing, in units of ``10 ** -fractional_precision`` (as clkhash computes it)."""
        return int(round(self.threshold_distance * pow(10, self.fractional_precision)))


Comparison = NgramComparison | ExactComparison | NumericComparison


@dataclass(frozen=True, kw_only=True)
class ClkhashFeature:
    """One feature (column) of a clkhash schema.

    ``format``, ``comparison`` and the rest are ``None`` for an ignored feature, whose column is
    read but not encoded.
    """

    identifier: str
    index: int
    ignored: bool = False
    format: Format | None = None
    comparison: Comparison | None = None
    strategy: Literal["bitsPerToken", "bitsPerFeature"] = "bitsPerToken"
    k: int = 0
    hash_type: Literal["blakeHash", "doubleHash"] = "blakeHash"
    prevent_singularity: bool = False
    missing_sentinel: str | None = None
    missing_replacement: str | None = None

    @property
    def encoding(self) -> str:
        """The text encoding tokens are hashed in (``utf-8`` unless a string format says)."""
        return self.format.encoding if isinstance(self.format, StringFormat) else "utf-8"


@dataclass(frozen=True, kw_only=True)
class ClkhashSchema:
    """A checked clkhash v3 linkage schema.

    Attributes
    ----------
    features
        Every feature, in column order, ignored ones included.
    bits
        ``clkConfig.l``: CLK length after folding.
    xor_folds
        XOR folds; tokens are hashed into ``bits * 2 ** xor_folds`` bits first.
    kdf_hash, kdf_salt, kdf_info, key_size
        HKDF settings of the per-feature keys.
    source
        Where the schema came from, for messages.
    """

    features: tuple[ClkhashFeature, ...]
    bits: int
    xor_folds: int = 0
    kdf_hash: str = "SHA256"
    kdf_salt: bytes | None = None
    kdf_info: bytes | None = None
    key_size: int = _DEFAULT_KEY_SIZE
    source: str = "clkhash schema"

    @property
    def hash_bits(self) -> int:
        """Length of the Bloom filter before folding: ``bits * 2 ** xor_folds``."""
        return self.bits << self.xor_folds

    @property
    def identifiers(self) -> list[str]:
        """The feature identifiers, in column order."""
        return [feature.identifier for feature in self.features]


def load_clkhash_schema(path: Path) -> ClkhashSchema:
    """Read and check a clkhash v3 linkage schema (JSON).

    Parameters
    ----------
    path
        The schema file.

    Returns
    -------
    ClkhashSchema

    Raises
    ------
    ConfigError
        When the file cannot be read or is not JSON, or the schema uses anything clkhash 0.18.3
        does not encode exactly as oda-fed does; the message names the file, the path in the
        schema and the feature.

    Examples
    --------
    >>> import json, tempfile
    >>> doc = {"version": 3, "clkConfig": {"l": 1024, "kdf": {"type": "HKDF"}},
    ...        "features": [{"identifier": "name", "format": {"type": "string"},
    ...                      "hashing": {"comparison": {"type": "ngram", "n": 2},
    ...                                  "strategy": {"bitsPerToken": 20}}}]}
    >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
    ...     json.dump(doc, fh)
    >>> load_clkhash_schema(Path(fh.name)).features[0].comparison
    NgramComparison(n=2, positional=False)
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the clkhash schema: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: the clkhash schema is not valid JSON: {exc}") from exc
    return parse_clkhash_schema(document, source=str(path))


def parse_clkhash_schema(document: Any, *, source: str = "clkhash schema") -> ClkhashSchema:
    """Check a parsed clkhash schema (see :func:`load_clkhash_schema`).

    Examples
    --------
    >>> parse_clkhash_schema({"version": 2})
    Traceback (most recent call last):
    ...
    oda_fed.errors.ConfigError: clkhash schema: version: schema version 2 is not supported; \
only version 3 linkage schemas are (upgrade it with clkhash first)
    """
    top = _Node(document, "", source=source)
    top.expect(dict, "an object")
    # The version first: other versions have other keys, and this says what to do about it.
    version = top.get("version")
    if isinstance(version, bool) or version != 3:
        raise top.at("version").error(
            f"schema version {version!r} is not supported; only version 3 linkage schemas are "
            "(upgrade it with clkhash first)"
        )
    top.keys(required=("version", "clkConfig", "features"))
    config = top.child("clkConfig")
    config.keys(required=("l", "kdf"), optional=("xor_folds", "xorFolds"))
    if config.get("xorFolds", 0) != 0:
        raise config.at("xorFolds").error(_IGNORED_BY_CLKHASH["xorFolds"])
    folds = config.integer("xor_folds", minimum=0, default=0)
    bits = config.integer("l", minimum=1)
    if bits << folds > MAX_HASH_BITS:
        raise config.at("l").error(
            f"l * 2 ** xor_folds = {bits << folds} bits is more than the {MAX_HASH_BITS} supported"
        )

    kdf = config.child("kdf")
    kdf.keys(required=("type",), optional=("hash", "salt", "info", "keySize"))
    if kdf.get("type") != "HKDF":
        raise kdf.at("type").error(f"{kdf.get('type')!r} is not supported; supported: HKDF")
    kdf_hash = kdf.choice("hash", tuple(_HKDF_DIGEST_BYTES), default="SHA256")
    key_size = kdf.integer("keySize", minimum=1, default=_DEFAULT_KEY_SIZE)

    features_node = top.at("features")
    if not isinstance(features_node.value, list) or not features_node.value:
        raise features_node.error("must be a non-empty list of features")
    features = tuple(_feature(features_node.item(i), i) for i in range(len(features_node.value)))

    hash_bits = bits << folds
    for feature in features:
        node = features_node.item(feature.index)
        if feature.ignored:
            continue
        if feature.hash_type == "blakeHash":
            if hash_bits & (hash_bits - 1):
                raise config.at("l").error(
                    f"blakeHash (feature {feature.identifier!r}) needs l * 2 ** xor_folds to be "
                    f"a power of two, got {hash_bits}"
                )
            if key_size > _BLAKE_MAX_KEY_BYTES:
                raise kdf.at("keySize").error(
                    f"blakeHash (feature {feature.identifier!r}) takes keys of at most "
                    f"{_BLAKE_MAX_KEY_BYTES} bytes, got {key_size}"
                )
        elif feature.prevent_singularity and hash_bits < 2:
            raise (
                node.at("hashing")
                .at("hash")
                .error("prevent_singularity needs l * 2 ** xor_folds of at least 2 bits")
            )
    # clkhash derives two keys per feature, ignored ones included, in one HKDF output.
    if 2 * len(features) * key_size > 255 * _HKDF_DIGEST_BYTES[kdf_hash]:
        raise kdf.at("keySize").error(
            f"HKDF-{kdf_hash} cannot derive {2 * len(features)} keys of {key_size} bytes; "
            "use a smaller keySize or SHA512"
        )
    return ClkhashSchema(
        features=features,
        bits=bits,
        xor_folds=folds,
        kdf_hash=kdf_hash,
        kdf_salt=kdf.base64("salt"),
        kdf_info=kdf.base64("info"),
        key_size=key_size,
        source=source,
    )


def _feature(node: _Node, index: int) -> ClkhashFeature:
    node.expect(dict, "an object")
    identifier = node.get("identifier")
    if not isinstance(identifier, str):
        raise node.at("identifier").error("must be a string")
    node = node.named(identifier)
    ignored = node.get("ignored", False)
    if not isinstance(ignored, bool):
        raise node.at("ignored").error("must be true or false")
    if ignored and "format" not in node.value and "hashing" not in node.value:
        node.keys(required=("identifier", "ignored"), optional=("description",))
        return ClkhashFeature(identifier=identifier, index=index, ignored=True)
    node.keys(required=("identifier", "format", "hashing"), optional=("description", "ignored"))
    node.text("description", default=None)
    fmt = _format(node.child("format"))
    hashing = node.child("hashing")
    hashing.keys(required=("comparison", "strategy"), optional=("hash", "missingValue"))
    comparison = _comparison(hashing.child("comparison"))
    strategy, k = _strategy(hashing.child("strategy"))
    hash_type, prevent = _hash(hashing.child("hash") if "hash" in hashing.value else None)
    sentinel = replacement = None
    encoding = fmt.encoding if isinstance(fmt, StringFormat) else "utf-8"
    if "missingValue" in hashing.value:
        missing = hashing.child("missingValue")
        missing.keys(required=("sentinel",), optional=("replaceWith",))
        sentinel = missing.text("sentinel")
        replacement = missing.text("replaceWith", default=sentinel)
        try:
            replacement.encode(encoding)
        except UnicodeEncodeError as exc:
            raise missing.at("replaceWith" if "replaceWith" in missing.value else "sentinel").error(
                f"cannot be encoded as {encoding}, the feature's encoding"
            ) from exc
    # A feature marked ignored but fully described is checked, then ignored, as clkhash does.
    return ClkhashFeature(
        identifier=identifier,
        index=index,
        ignored=ignored,
        format=None if ignored else fmt,
        comparison=None if ignored else comparison,
        strategy=strategy,
        k=k,
        hash_type=hash_type,
        prevent_singularity=prevent,
        missing_sentinel=sentinel,
        missing_replacement=replacement,
    )


def _format(node: _Node) -> Format:
    kind = node.get("type")
    common = ("type", "description")
    node.text("description", default=None)
    if kind == "string":
        if "pattern" in node.value:
            node.keys(required=("type", "pattern"), optional=("encoding", "description"))
            pattern = node.text("pattern")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise node.at("pattern").error(f"is not a valid regular expression: {exc}") from exc
        else:
            node.keys(
                required=("type",),
                optional=("encoding", "case", "minLength", "maxLength", "description"),
            )
            pattern = None
        max_length = node.integer("maxLength", minimum=1, default=None)
        return StringFormat(
            encoding=node.choice("encoding", ENCODINGS, default="utf-8"),
            case=node.choice("case", CASES, default="mixed"),
            min_length=node.integer("minLength", minimum=0, default=None),
            max_length=max_length,
            pattern=pattern,
        )
    if kind == "integer":
        node.keys(required=("type",), optional=(*common, "minimum", "maximum"))
        return IntegerFormat(
            minimum=node.integer("minimum", default=None),
            maximum=node.integer("maximum", default=None),
        )
    if kind == "date":
        node.keys(required=("type", "format"), optional=common)
        return DateFormat(format=node.text("format"))
    if kind == "enum":
        node.keys(required=("type", "values"), optional=common)
        values = node.get("values")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise node.at("values").error("must be a list of strings")
        return EnumFormat(values=frozenset(values))
    raise node.at("type").error(
        f"{kind!r} is not supported; supported: string, integer, date, enum"
    )


def _comparison(node: _Node) -> Comparison:
    kind = node.get("type")
    if kind == "ngram":
        node.keys(required=("type", "n"), optional=("positional",))
        positional = node.get("positional", False)
        if not isinstance(positional, bool):
            raise node.at("positional").error("must be true or false")
        return NgramComparison(n=node.integer("n", minimum=1, maximum=MAX_K), positional=positional)
    if kind == "exact":
        node.keys(required=("type",))
        return ExactComparison()
    if kind == "numeric":
        node.keys(
            required=("type", "thresholdDistance", "resolution"),
            optional=("fractional_precision",),
        )
        distance = node.get("thresholdDistance")
        if isinstance(distance, bool) or not isinstance(distance, int | float) or distance <= 0:
            raise node.at("thresholdDistance").error(f"must be a number > 0, got {distance!r}")
        comparison = NumericComparison(
            threshold_distance=distance,
            resolution=node.integer("resolution", minimum=1, maximum=MAX_K),
            fractional_precision=node.integer("fractional_precision", minimum=0, default=0),
        )
        try:
            interval = comparison.distance_interval
        except (OverflowError, ValueError) as exc:
            raise node.error(f"thresholdDistance and fractional_precision: {exc}") from exc
        if interval == 0:
            raise node.at("thresholdDistance").error(
                "rounds to 0 at this fractional_precision; raise one of them"
            )
        return comparison
    raise node.at("type").error(f"{kind!r} is not supported; supported: ngram, exact, numeric")


def _strategy(node: _Node) -> tuple[Literal["bitsPerToken", "bitsPerFeature"], int]:
    node.expect(dict, "an object")
    names = ("bitsPerToken", "bitsPerFeature")
    for key in node.value:
        if key not in names:
            raise node.error(f"{key!r} is not supported; supported: bitsPerToken, bitsPerFeature")
    if len(node.value) != 1:
        raise node.error("must have exactly one of bitsPerToken, bitsPerFeature")
    (name,) = node.value
    return name, node.integer(name, minimum=1, maximum=MAX_K)


def _hash(node: _Node | None) -> tuple[Literal["blakeHash", "doubleHash"], bool]:
    if node is None:
        return "blakeHash", False
    kind = node.get("type")
    if kind == "blakeHash":
        node.keys(required=("type",))
        return "blakeHash", False
    if kind == "doubleHash":
        node.keys(required=("type",), optional=("prevent_singularity",))
        prevent = node.get("prevent_singularity", False)
        if not isinstance(prevent, bool):
            raise node.at("prevent_singularity").error("must be true or false")
        return "doubleHash", prevent
    raise node.at("type").error(f"{kind!r} is not supported; supported: blakeHash, doubleHash")


class _Node:
    """A value in the schema with its path, for precise messages."""

    def __init__(self, value: Any, path: str, *, source: str, feature: str | None = None) -> None:
        self.value = value
        self.path = path
        self.source = source
        self.feature = feature

    def error(self, problem: str) -> ConfigError:
        where = self.path or "(top level)"
        if self.feature is not None:
            where += f" (feature {self.feature!r})"
        return ConfigError(f"{self.source}: {where}: {problem}")

    def at(self, key: str) -> _Node:
        path = f"{self.path}.{key}" if self.path else key
        return _Node(self.value.get(key), path, source=self.source, feature=self.feature)

    def item(self, i: int) -> _Node:
        return _Node(self.value[i], f"{self.path}[{i}]", source=self.source, feature=self.feature)

    def named(self, feature: str) -> _Node:
        return _Node(self.value, self.path, source=self.source, feature=feature)

    def expect(self, kind: type, name: str) -> None:
        if not isinstance(self.value, kind):
            raise self.error(f"must be {name}, got {type(self.value).__name__}")

    def child(self, key: str) -> _Node:
        node = self.at(key)
        node.expect(dict, "an object")
        return node

    def get(self, key: str, default: Any = None) -> Any:
        return self.value.get(key, default)

    def keys(self, *, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
        self.expect(dict, "an object")
        for key in required:
            if key not in self.value:
                raise self.error(f"{key!r} is required")
        allowed = set(required) | set(optional)
        for key in self.value:
            if key not in allowed:
                hint = _IGNORED_BY_CLKHASH.get(key)
                if hint is not None:
                    raise self.at(key).error(hint)
                raise self.at(key).error(
                    f"is not supported here; supported: {', '.join(sorted(allowed))}"
                )

    def integer(
        self,
        key: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        default: Any = ...,
    ) -> Any:
        if key not in self.value:
            if default is ...:
                raise self.error(f"{key!r} is required")
            return default
        value = self.value[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.at(key).error(f"must be a whole number, got {value!r}")
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise self.at(key).error(f"must be {bounds}, got {value}")
        return value

    def text(self, key: str, *, default: Any = ...) -> Any:
        if key not in self.value:
            if default is ...:
                raise self.error(f"{key!r} is required")
            return default
        value = self.value[key]
        if not isinstance(value, str):
            raise self.at(key).error(f"must be a string, got {type(value).__name__}")
        return value

    def choice(self, key: str, options: tuple[str, ...], *, default: str) -> str:
        value = self.value.get(key, default)
        if value not in options:
            raise self.at(key).error(f"{value!r} is not supported; supported: {', '.join(options)}")
        return value

    def base64(self, key: str) -> bytes | None:
        text = self.text(key, default=None)
        if text is None:
            return None
        try:
            # Not strict, like clkhash: characters outside the alphabet are skipped.
            return base64.b64decode(text)
        except (binascii.Error, ValueError) as exc:
            raise self.at(key).error(f"is not valid base64: {exc}") from exc

"""Per-partner pseudonyms of entity ids: what a node receives instead of the coordinator's ids.

If every partner received the same entity id for the same person, any two partners could join
their files on it, outside the project, without the coordinator. So each partner receives its own
pseudonym of each entity: the entity id encrypted deterministically (AES-SIV, RFC 5297) with the
partner's name as associated data, under a key only the coordinator holds (``pseudonyms.key`` in
its state folder).
Two partners' pseudonyms of one entity are unrelated; the coordinator can map either back
(:meth:`Pseudonyms.unmask`). With ``stable_entity_ids`` an entity keeps its id, so each partner's
pseudonym of it stays the same from round to round, and only for that partner.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from oda_fed.errors import ConfigError
from oda_fed.pki.files import write_file

__all__ = ["Pseudonyms"]

KEY_FILE = "pseudonyms.key"
KEY_BYTES = 32
MAX_ID = 64
_PSEUDONYM = re.compile(r"p([0-9a-f]{34,160})")


def _associated(partner: str) -> list[bytes]:
    return [b"oda-fed/pseudonym/v1", partner.encode("utf-8")]


class Pseudonyms:
    """Entity ids as one partner may see them.

    Examples
    --------
    >>> p = Pseudonyms(bytes(32))
    >>> mine = p.mask("council", "e0123456789abcdef")
    >>> mine != p.mask("police", "e0123456789abcdef"), p.unmask("council", mine)
    (True, 'e0123456789abcdef')
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigError(f"a pseudonym key is {KEY_BYTES} bytes")
        self._siv = AESSIV(key)

    @classmethod
    def load_or_create(cls, state_dir: Path) -> Pseudonyms:
        """The coordinator's key, made (owner-only) the first time. Losing it changes every
        partner's pseudonyms, so it is kept with the rest of the state, and the coordinator
        refuses to start without it once entity ids were delivered
        (:func:`~oda_fed.coordinator.recovery.open_store`)."""
        path = Path(state_dir) / KEY_FILE
        if not path.exists():
            write_file(path, AESSIV.generate_key(256), private=True, force=False)
        return cls.load(state_dir)

    @classmethod
    def load(cls, state_dir: Path) -> Pseudonyms:
        """The coordinator's key, which must exist (to map pseudonyms back, e.g. for a DPO)."""
        path = Path(state_dir) / KEY_FILE
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the pseudonym key {path}: {exc.strerror or exc}"
            ) from None
        if len(key) != KEY_BYTES:
            raise ConfigError(
                f"{path} is not a pseudonym key ({KEY_BYTES} bytes): restore it from the state backup; "
                "a new key would give every partner new pseudonyms for the same entities"
            )
        return cls(key)

    def mask(self, partner: str, entity_id: str) -> str:
        """``partner``'s pseudonym of ``entity_id``: the same every time, and unrelated to any
        other partner's."""
        data = entity_id.encode("utf-8")
        if not 0 < len(data) <= MAX_ID:
            raise ValueError("not an entity id")
        return "p" + self._siv.encrypt(data, _associated(partner)).hex()

    def unmask(self, partner: str, pseudonym: str) -> str:
        """The entity id behind ``partner``'s pseudonym.

        Raises
        ------
        ValueError
            If it is not a pseudonym this key made for ``partner``.
        """
        found = _PSEUDONYM.fullmatch(pseudonym)
        if found is None or len(found.group(1)) % 2:
            raise ValueError("not a pseudonym")
        try:
            data = self._siv.decrypt(bytes.fromhex(found.group(1)), _associated(partner))
        except InvalidTag:
            raise ValueError(f"not a pseudonym of {partner}'s") from None
        return data.decode("utf-8")

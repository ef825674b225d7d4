"""At the default level a plain Bloom-filter CLK linkage still reaches precision and recall 0.95.

The encoder here is a deliberately small, independent stand-in for the project's (keyed bigram
hashing into 1024 bits on first name, last name, date of birth, sex and postcode), so that this
promise of the generator is checked without depending on other subpackages.
"""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import datetime
from functools import cache

import numpy as np
import pandas as pd

from oda_fed.synth import PartnerProfile, generate

BITS = 1024
HASHES = {"first_name": 20, "last_name": 20, "date_of_birth": 15, "sex": 20, "postcode": 12}
THRESHOLD = 0.8


def clean(field: str, value: str, profile: PartnerProfile) -> str:
    if not value:
        return ""
    if field == "date_of_birth":
        return datetime.strptime(value, profile.date_format).strftime("%Y%m%d")
    if field == "sex":
        return value[0].lower()
    if field == "postcode":
        return value.replace(" ", "").upper()
    folded = unicodedata.normalize("NFKD", value)
    return "".join(c for c in folded.lower() if c.isalpha())


@cache
def positions(field: str, token: str) -> tuple[int, ...]:
    digest = hashlib.blake2b(f"{field}|{token}".encode(), key=b"test-secret", digest_size=16)
    h1 = int.from_bytes(digest.digest()[:8], "little")
    h2 = int.from_bytes(digest.digest()[8:], "little") | 1
    return tuple((h1 + i * h2) % BITS for i in range(HASHES[field]))


def encode(frame: pd.DataFrame, profile: PartnerProfile) -> np.ndarray:
    clks = np.zeros((len(frame), BITS), dtype=np.float32)
    columns = [frame[profile.columns[f]] for f in HASHES]
    for row, values in enumerate(zip(*columns, strict=True)):
        for field, value in zip(HASHES, values, strict=True):
            text = clean(field, value, profile)
            tokens = (
                [text] if field == "sex" else [f"_{text}_"[i : i + 2] for i in range(len(text) + 1)]
            )
            for token in tokens if text else []:
                clks[row, list(positions(field, token))] = 1.0
    return clks


def one_to_one(left: np.ndarray, right: np.ndarray) -> list[tuple[int, int]]:
    """Greedy 1-to-1 matching by Dice score, best first."""
    dice = 2 * (left @ right.T) / (left.sum(1)[:, None] + right.sum(1)[None, :])
    i, j = np.nonzero(dice >= THRESHOLD)
    taken_left, taken_right, pairs = set(), set(), []
    for k in np.argsort(-dice[i, j], kind="stable"):
        if i[k] not in taken_left and j[k] not in taken_right:
            taken_left.add(i[k])
            taken_right.add(j[k])
            pairs.append((int(i[k]), int(j[k])))
    return pairs


def test_medium_errors_stay_linkable() -> None:
    data = generate(population=2000, partners=3, seed=2024, errors="medium")
    truth = data.truth.set_index(["source", "record_id"])["person_id"]
    clks, people = {}, {}
    for profile in data.profiles:
        frame = data.partners[profile.id]
        clks[profile.id] = encode(frame, profile)
        keys = zip([profile.id] * len(frame), frame[profile.record_id_column], strict=True)
        people[profile.id] = truth.loc[list(keys)].to_numpy()
    ids = [p.id for p in data.profiles]
    found = correct = expected = 0
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            left, right = ids[a], ids[b]
            expected += len(set(people[left]) & set(people[right]))
            pairs = one_to_one(clks[left], clks[right])
            found += len(pairs)
            correct += sum(people[left][i] == people[right][j] for i, j in pairs)
    precision, recall = correct / found, correct / expected
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)

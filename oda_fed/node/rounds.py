"""One round's files on the node: the ref to record id mapping, the CLKs sent, the attributes
prepared, the entity ids received. They never leave the node.

A round's folder is written in a scratch folder and renamed into place in one step, so a crash
leaves either the whole round prepared or nothing. The folders and files are owner-only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from oda_fed.durable import fsync_dir, private_dir, private_file, write_atomic
from oda_fed.encoding.evidence import Evidence
from oda_fed.errors import ProtocolError
from oda_fed.node.policy import Refused
from oda_fed.transport.protocol import check_round_id


class RoundFiles:
    """One round's local state: the ref ↔ record id mapping, the CLKs sent, entity ids received."""

    def __init__(self, workdir: Path, round_id: str) -> None:
        self.dir = workdir / "rounds" / check_round_id(round_id)

    @property
    def prepared(self) -> bool:
        return (self.dir / "refs.csv").exists()

    def save(
        self,
        *,
        record_ids: np.ndarray,
        clks: np.ndarray,
        attributes: dict[str, list[str]],
        tokens: dict[str, list[bytes | None]],
        evidence: Evidence | None = None,
    ) -> None:
        """Write the round's state in a scratch folder and rename it into place in one step."""
        tmp = self.dir.with_name(self.dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        private_dir(tmp)  # and ``rounds/``, whose listing names every round this node took part in
        pd.DataFrame({"ref": np.arange(len(record_ids)), "record_id": record_ids}).to_csv(
            tmp / "refs.csv", index=False
        )
        np.save(tmp / "clks.npy", clks)
        for name, values in attributes.items():
            (tmp / f"attribute-{name}.json").write_text(json.dumps(values, ensure_ascii=False))
        hexed = {f: [v.hex() if v else None for v in values] for f, values in tokens.items()}
        (tmp / "tokens.json").write_text(json.dumps(hexed))
        if evidence is not None:
            np.savez(
                tmp / "evidence.npz",
                **{f"filter:{k}": v for k, v in evidence.filters.items()},
                **{f"token:{k}": v for k, v in evidence.tokens.items()},
            )
        private_file(tmp)  # CLKs and the ref mapping: the node's user only
        tmp.rename(self.dir)
        fsync_dir(self.dir.parent)

    def record_ids(self) -> np.ndarray:
        return pd.read_csv(self.dir / "refs.csv", dtype={"record_id": str}, keep_default_na=False)[
            "record_id"
        ].to_numpy(dtype=object)

    def clks(self) -> np.ndarray:
        return np.load(self.dir / "clks.npy")

    def evidence(self) -> Evidence | None:
        """The field evidence prepared for the round, if the project links with it."""
        path = self.dir / "evidence.npz"
        if not path.exists():
            return None
        with np.load(path) as saved:
            kinds = {"filter": {}, "token": {}}
            for key in saved.files:
                kind, name = key.split(":", 1)
                kinds[kind][name] = saved[key]
        return Evidence(filters=kinds["filter"], tokens=kinds["token"])

    def tokens(self) -> dict[str, list[bytes | None]]:
        hexed = json.loads((self.dir / "tokens.json").read_text())
        return {f: [bytes.fromhex(v) if v else None for v in values] for f, values in hexed.items()}

    def attribute(self, name: str) -> list[str]:
        path = self.dir / f"attribute-{name}.json"
        if not path.exists():
            raise Refused(f"attribute '{name}' was not prepared for this round")
        return json.loads(path.read_text())

    def write_entities(self, entity_ids: list[str]) -> Path:
        ids = self.record_ids()
        if len(entity_ids) != len(ids):
            raise ProtocolError(f"received {len(entity_ids)} entity ids for {len(ids)} refs")
        out = self.dir / "entities.csv"
        frame = pd.DataFrame({"record_id": ids, "entity_id": entity_ids})
        return write_atomic(out, lambda tmp: frame.to_csv(tmp, index=False), private=True)

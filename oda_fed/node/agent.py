"""The node agent: dials out to the coordinator, takes instructions, and does the partner's part.

The node never accepts inbound connections. It checks every instruction against the project its DPO
pinned before doing anything, refuses what the project does not allow, and writes every message in
or out to its own audit log. Record ids stay here: the coordinator sees only per-round random refs,
and the mapping between the two lives in this node's work folder. When the project sets
``[linkage] stable_entity_ids``, each CLK also goes with its record key, a keyed pseudonym of the
record id (:func:`oda_fed.encoding.exact.record_keys`) that is the same every round, so the
coordinator can keep the record's entity id; it cannot reverse it without the linkage secret.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd

from oda_fed import __version__
from oda_fed.config import LoadedProject, NodeConfig, load_pinned_project
from oda_fed.durable import fsync_dir, write_atomic
from oda_fed.encoding.exact import derive_record_key, record_keys
from oda_fed.errors import (
    AuthError,
    ConfigError,
    OdaFedError,
    ProjectMismatchError,
    ProtocolError,
)
from oda_fed.node.encode import encode_file
from oda_fed.node.sources import layout_for
from oda_fed.pki import (
    identity_from_cert,
    load_certificate,
    read_secret,
    secret_fingerprints,
    verify_issued_by,
)
from oda_fed.proto.v1 import coordinator_pb2, coordinator_pb2_grpc
from oda_fed.transport.channel import create_channel, describe_rpc_error
from oda_fed.transport.crossing import Crossings

log = logging.getLogger(__name__)

COORDINATOR = "coordinator"
ATTRIBUTE_CHUNK = 10_000
CONNECT_TIMEOUT = 10.0
_FATAL = {
    grpc.StatusCode.PERMISSION_DENIED: AuthError,
    grpc.StatusCode.UNAUTHENTICATED: AuthError,
    grpc.StatusCode.FAILED_PRECONDITION: ProjectMismatchError,
    grpc.StatusCode.INVALID_ARGUMENT: ProtocolError,
    grpc.StatusCode.UNIMPLEMENTED: ProtocolError,
}


class Refused(Exception):
    """An instruction this node will not carry out; the reason goes back to the coordinator."""


class RoundFiles:
    """One round's local state: the ref ↔ record id mapping, the CLKs sent, entity ids received."""

    def __init__(self, workdir: Path, round_id: str) -> None:
        if not round_id or "/" in round_id or round_id.startswith("."):
            raise ProtocolError(f"unusable round id {round_id!r}")
        self.dir = workdir / "rounds" / round_id

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
    ) -> None:
        """Write the round's state in a scratch folder and rename it into place in one step."""
        tmp = self.dir.with_name(self.dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        pd.DataFrame({"ref": np.arange(len(record_ids)), "record_id": record_ids}).to_csv(
            tmp / "refs.csv", index=False
        )
        np.save(tmp / "clks.npy", clks)
        for name, values in attributes.items():
            (tmp / f"attribute-{name}.json").write_text(json.dumps(values, ensure_ascii=False))
        hexed = {f: [v.hex() if v else None for v in values] for f, values in tokens.items()}
        (tmp / "tokens.json").write_text(json.dumps(hexed))
        tmp.rename(self.dir)
        fsync_dir(self.dir.parent)

    def record_ids(self) -> np.ndarray:
        return pd.read_csv(self.dir / "refs.csv", dtype={"record_id": str}, keep_default_na=False)[
            "record_id"
        ].to_numpy(dtype=object)

    def clks(self) -> np.ndarray:
        return np.load(self.dir / "clks.npy")

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
        write_atomic(out, lambda tmp: frame.to_csv(tmp, index=False))
        return out


class NodeAgent:
    """A partner's node. Construct from a validated config; :meth:`run` until told to stop."""

    def __init__(self, config: NodeConfig, *, config_path: Path) -> None:
        self.config = config
        self.partner = config.partner
        self.loaded: LoadedProject = load_pinned_project(
            config.project, pinned=config.project_fingerprint, pinned_in=config_path
        )
        self.project = self.loaded.project
        if self.partner not in self.project.partner_ids:
            raise ConfigError(
                f"{config_path}: partner '{self.partner}' is not a partner in project "
                f"'{self.project.name}' ({', '.join(self.project.partner_ids)})"
            )
        self._check_certificate()
        self.secret = read_secret(config.secret_file)
        # Derived only when the signed project asks for record keys; otherwise none are made.
        self.record_key = (
            derive_record_key(self.secret, context=self.project.name, partner=self.partner)
            if self.project.linkage.stable_entity_ids
            else None
        )
        self.layout = layout_for(self.project, self.partner, config.source)
        self.workdir = config.workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.crossings = Crossings(
            config.audit_path,
            party=self.partner,
            project=self.loaded.fingerprint,
            forbidden=secret_fingerprints(self.secret),
        )
        self.rounds_closed = 0

    def close(self) -> None:
        self.crossings.close()

    def _check_certificate(self) -> None:
        """Catch a wrong certificate here, with a clear message, before the coordinator's TLS
        handshake refuses it with nothing more than a closed socket."""
        tls = self.config.tls
        cert = load_certificate(tls.cert)
        verify_issued_by(load_certificate(tls.ca, what="CA certificate"), cert)
        ident = identity_from_cert(cert)
        if ident.role != "node" or ident.name != self.partner:
            raise AuthError(
                f"{tls.cert} is a {ident.role} certificate for '{ident.name}', but this "
                f"node is partner '{self.partner}'; use the node certificate issued to "
                f"'{self.partner}'"
            )

    # --- connection -----------------------------------------------------------------------------

    def run(self, *, rounds: int | None = None, give_up_after: float | None = None) -> None:
        """Stay connected, reconnecting with backoff, until ``rounds`` rounds have closed.

        Raises an :class:`~oda_fed.errors.OdaFedError` for anything a retry cannot fix: a refused
        identity or project, a failed TLS handshake, or bad input data.
        """
        address = self.config.coordinator.address
        delay = 1.0
        down_since: float | None = None
        while rounds is None or self.rounds_closed < rounds:
            channel = create_channel(
                address=address,
                tls=self.config.tls,
                server_name=self.config.coordinator.server_name,
            )
            try:
                # Say hello (and log it) only once a connection exists, so an unreachable
                # coordinator leaves no one-sided entries in this node's audit log.
                grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT)
                self._session(coordinator_pb2_grpc.CoordinatorStub(channel), rounds)
                delay, down_since = 1.0, None
            except grpc.FutureTimeoutError:
                down_since = self._wait_to_retry(
                    f"{address}: no connection within {CONNECT_TIMEOUT:.0f}s (is the coordinator "
                    "running, and was its certificate issued by the partnership CA?)",
                    delay,
                    down_since,
                    give_up_after,
                )
                delay = min(delay * 2, 30.0)
            except grpc.RpcError as exc:
                message = describe_rpc_error(exc, address=address)
                details = (exc.details() or "") if hasattr(exc, "details") else ""
                if "handshake" in details.lower() or "certificate" in details.lower():
                    raise AuthError(
                        f"TLS handshake with the coordinator failed: {message}"
                    ) from None
                fatal = _FATAL.get(exc.code())
                if fatal is not None:
                    raise fatal(f"the coordinator refused this node: {details}") from None
                down_since = self._wait_to_retry(message, delay, down_since, give_up_after)
                delay = min(delay * 2, 30.0)
            finally:
                channel.close()

    @staticmethod
    def _wait_to_retry(
        message: str, delay: float, down_since: float | None, give_up_after: float | None
    ) -> float:
        now = time.monotonic()
        down_since = down_since or now
        if give_up_after is not None and now - down_since > give_up_after:
            raise ProtocolError(f"gave up after {give_up_after:.0f}s: {message}")
        log.warning("%s; retrying in %.0fs", message, delay)
        time.sleep(delay)
        return down_since

    def _session(self, stub: coordinator_pb2_grpc.CoordinatorStub, rounds: int | None) -> None:
        outgoing: queue.Queue[coordinator_pb2.NodeEvent | None] = queue.Queue()
        hello = coordinator_pb2.Hello(
            partner_id=self.partner,
            project_fingerprint=self.loaded.fingerprint,
            software_version=__version__,
        )
        self.crossings.record(
            sender=self.partner, recipient=COORDINATOR, kind="hello", message=hello
        )
        outgoing.put(coordinator_pb2.NodeEvent(hello=hello))
        stream = stub.Connect(iter(outgoing.get, None))
        finishing = False
        failure: OdaFedError | None = None
        try:
            for instruction in stream:
                kind = "instruction:" + (instruction.WhichOneof("body") or "empty")
                self.crossings.record(
                    sender=COORDINATOR,
                    recipient=self.partner,
                    kind=kind,
                    message=instruction,
                    round_id=instruction.round_id,
                )
                if finishing:
                    continue  # logged as received; the coordinator re-sends it next session
                result, failure = self._handle(stub, instruction)
                self.crossings.record(
                    sender=self.partner,
                    recipient=COORDINATOR,
                    kind="instruction_result",
                    message=result,
                    round_id=instruction.round_id,
                    records=result.records,
                )
                outgoing.put(coordinator_pb2.NodeEvent(result=result))
                if failure is not None or (rounds is not None and self.rounds_closed >= rounds):
                    # Half-close and let the coordinator end the stream, so our last result is
                    # delivered (and logged on both sides) rather than cut off by a cancel.
                    finishing = True
                    outgoing.put(None)
        except BaseException:
            stream.cancel()
            raise
        finally:
            outgoing.put(None)
        if failure is not None:
            raise failure

    # --- instructions ---------------------------------------------------------------------------

    def _handle(
        self, stub, instruction
    ) -> tuple[coordinator_pb2.InstructionResult, OdaFedError | None]:
        result = coordinator_pb2.InstructionResult(
            instruction_id=instruction.instruction_id, ok=True
        )
        failure: OdaFedError | None = None
        body = instruction.WhichOneof("body")
        try:
            if instruction.project_fingerprint != self.loaded.fingerprint:
                raise Refused(
                    f"project fingerprint mismatch: the instruction names "
                    f"{instruction.project_fingerprint or '(none)'}, this node is pinned to "
                    f"{self.loaded.fingerprint}"
                )
            files = RoundFiles(self.workdir, instruction.round_id)
            if body == "encode_and_upload":
                result.records = self._encode_and_upload(stub, instruction, files)
            elif body == "share_attribute":
                result.records = self._share_attribute(stub, instruction, files)
            elif body == "entities_ready":
                result.records = self._fetch_entities(stub, instruction, files)
            elif body == "product_release":
                self._receive_product(instruction)
            elif body == "round_closed":
                self.rounds_closed += 1
                log.info(
                    "round %s closed: %s", instruction.round_id, instruction.round_closed.status
                )
            else:
                raise Refused(f"unknown instruction {body!r}; this node runs oda-fed {__version__}")
        except Refused as exc:
            result.ok, result.error = False, str(exc)[:200]
            log.warning("refused %s for round %s: %s", body, instruction.round_id, exc)
            self.crossings.record(
                sender=COORDINATOR,
                recipient=self.partner,
                kind=f"refused:{body}",
                round_id=instruction.round_id,
                detail={"reason": str(exc)[:200]},
            )
        except OdaFedError as exc:
            # The full message stays in this node's log; the coordinator only learns the kind.
            result.ok, result.error = False, f"{type(exc).__name__} on the node; see the node's log"
            failure = exc
        return result, failure

    def _encode_and_upload(self, stub, instruction, files: RoundFiles) -> int:
        request = instruction.encode_and_upload
        if request.clk_bits != self.project.linkage.wire_bits:
            raise Refused(
                f"asked for {request.clk_bits}-bit CLKs; the project says "
                f"{self.project.linkage.wire_bits}"
            )
        if not files.prepared:
            source = encode_file(
                self.config.source.path,
                project=self.project,
                layout=self.layout,
                secret=self.secret,
                progress=lambda done, total: log.debug("encoded %d of %d records", done, total),
            )
            # Random per-round refs: ref i is the record at order[i], so refs say nothing of file order.
            order = np.random.default_rng(secrets.randbits(128)).permutation(len(source))
            shareable = {
                p.area.attribute for p in self.project.products if p.area.partner == self.partner
            }
            attributes = {
                a: [source.attributes[a][i] for i in order]
                for a in shareable
                if a in source.attributes
            }
            files.save(
                record_ids=source.record_ids[order],
                clks=np.ascontiguousarray(source.clks[order]),
                attributes=attributes,
                tokens={f: [v[i] for i in order] for f, v in source.tokens.items()},
            )
            log.info(
                "round %s: encoded %d records (missing: %s; invalid: %s)",
                instruction.round_id,
                len(source),
                source.missing,
                source.invalid,
            )
        clks = files.clks()
        keys = None
        if self.record_key is not None:
            # Recomputed from the saved refs, so a resumed upload sends the same keys.
            keys = record_keys([str(r) for r in files.record_ids()], key=self.record_key)
        chunk_records = max(1, request.chunk_records or 10_000)
        self._upload_clks(
            stub,
            instruction.round_id,
            clks,
            tokens=files.tokens(),
            keys=keys,
            chunk_records=chunk_records,
        )
        return len(clks)

    def _upload_clks(
        self,
        stub,
        round_id: str,
        clks: np.ndarray,
        *,
        tokens: dict[str, list[bytes | None]],
        keys: list[bytes] | None,
        chunk_records: int,
    ) -> None:
        """Send the CLKs (with keyed tokens and, when the project asks, record keys) in chunks,
        skipping chunks the coordinator already holds."""
        fingerprint = self.loaded.fingerprint
        status = stub.GetUploadStatus(
            coordinator_pb2.UploadStatusRequest(
                round_id=round_id, project_fingerprint=fingerprint, upload="clks"
            )
        )
        if status.complete:
            return
        stored = set(status.stored_chunks)
        n = len(clks)
        total = max(1, -(-n // chunk_records))
        bits = clks.shape[1] * 64

        def chunks() -> Iterator[coordinator_pb2.ClkChunk]:
            for index in range(total):
                if index in stored:
                    continue
                rows = slice(index * chunk_records, (index + 1) * chunk_records)
                part = clks[rows]
                chunk = coordinator_pb2.ClkChunk(
                    round_id=round_id,
                    project_fingerprint=fingerprint,
                    chunk_index=index,
                    total_chunks=total,
                    first_ref=index * chunk_records,
                    records=len(part),
                    total_records=n,
                    clk_bits=bits,
                    clks=part.astype("<u8", copy=False).tobytes(),
                )
                for field, values in tokens.items():
                    chunk.tokens.add(field=field, values=[v or b"" for v in values[rows]])
                detail: dict[str, int | bool] = {"chunk": index, "of": total}
                if keys is not None:
                    chunk.record_keys.extend(keys[rows])
                    # The DPO reading this log sees that record pseudonyms left with the CLKs.
                    detail["record_keys"] = True
                self.crossings.record(
                    sender=self.partner,
                    recipient=COORDINATOR,
                    kind="clk_chunk",
                    message=chunk,
                    records=len(part),
                    round_id=round_id,
                    detail=detail,
                )
                yield chunk

        receipt = stub.UploadClks(chunks())
        if not receipt.complete:
            raise ProtocolError(
                f"upload of round {round_id} incomplete: the coordinator holds "
                f"{receipt.records_stored} of {n} CLKs"
            )
        log.info(
            "round %s: uploaded %d CLKs in %d chunk(s)%s",
            round_id,
            n,
            total,
            " with record keys" if keys is not None else "",
        )

    def _share_attribute(self, stub, instruction, files: RoundFiles) -> int:
        request = instruction.share_attribute
        if not self.project.attribute_allowed(
            partner=self.partner, product_id=request.product_id, attribute=request.attribute
        ):
            raise Refused(
                f"the project does not allow sharing '{request.attribute}' for product "
                f"'{request.product_id}'"
            )
        values = files.attribute(request.attribute)
        n = len(values)
        total = max(1, -(-n // ATTRIBUTE_CHUNK))

        def chunks() -> Iterator[coordinator_pb2.AttributeChunk]:
            for index in range(total):
                part = values[index * ATTRIBUTE_CHUNK : (index + 1) * ATTRIBUTE_CHUNK]
                chunk = coordinator_pb2.AttributeChunk(
                    round_id=instruction.round_id,
                    project_fingerprint=self.loaded.fingerprint,
                    product_id=request.product_id,
                    attribute=request.attribute,
                    chunk_index=index,
                    total_chunks=total,
                    first_ref=index * ATTRIBUTE_CHUNK,
                    total_records=n,
                    values=part,
                )
                self.crossings.record(
                    sender=self.partner,
                    recipient=COORDINATOR,
                    kind="attribute_chunk",
                    message=chunk,
                    records=len(part),
                    round_id=instruction.round_id,
                    detail={"attribute": request.attribute, "chunk": index},
                )
                yield chunk

        stub.UploadAttribute(chunks())
        return n

    def _fetch_entities(self, stub, instruction, files: RoundFiles) -> int:
        entity_ids: list[str] = []
        request = coordinator_pb2.FetchEntitiesRequest(
            round_id=instruction.round_id, project_fingerprint=self.loaded.fingerprint
        )
        for chunk in stub.FetchEntities(request):
            self.crossings.record(
                sender=COORDINATOR,
                recipient=self.partner,
                kind="entity_chunk",
                message=chunk,
                records=len(chunk.entity_ids),
                round_id=instruction.round_id,
            )
            if chunk.first_ref != len(entity_ids):
                raise ProtocolError(f"entity ids arrived out of order (ref {chunk.first_ref})")
            entity_ids.extend(chunk.entity_ids)
        path = files.write_entities(entity_ids)
        shutil.copyfile(path, self.workdir / "entities.csv")
        log.info(
            "round %s: entity ids for %d records written to %s",
            instruction.round_id,
            len(entity_ids),
            path,
        )
        return len(entity_ids)

    def _receive_product(self, instruction) -> None:
        release = instruction.product_release
        product = next((p for p in self.project.products if p.id == release.product_id), None)
        if product is None or self.partner not in product.recipients:
            raise Refused(f"this partner is not a recipient of product '{release.product_id}'")
        out = self.workdir / "releases" / instruction.round_id / release.product_id
        out.mkdir(parents=True, exist_ok=True)
        for item in release.files:
            name = Path(item.name).name  # never let the sender choose a path
            if not name or name.startswith("."):
                raise Refused(f"unusable file name {item.name!r} in release")
            (out / name).write_bytes(item.content)
        log.info(
            "round %s: received product '%s' (%d file(s)) in %s",
            instruction.round_id,
            release.product_id,
            len(release.files),
            out,
        )

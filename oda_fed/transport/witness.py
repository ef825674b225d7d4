"""Cross-witnessing of the audit logs at each round's end, the same code on both sides.

The coordinator's ``round_closed`` carries its signed checkpoint for the round and a consistency
proof from the checkpoint that node last cosigned. The node checks both, cosigns, keeps the
cosigned checkpoint, and answers with its own signed checkpoint and a proof from the size the
coordinator last witnessed; the coordinator checks, cosigns and keeps that. From then on
neither side can truncate, delete or rewrite what it had logged without the other side's copy of
its signed checkpoint showing it (``oda-fed audit verify``).

A check that fails is never cosigned: it is logged as ``refused:witness`` with the reason, for
the DPO.
"""

from __future__ import annotations

import json

from oda_fed.audit.checkpoint import Signature, SignedCheckpoint
from oda_fed.audit.entry import canonical_json
from oda_fed.audit.merkle import verify_consistency
from oda_fed.errors import AuditError
from oda_fed.transport.crossing import Crossings
from oda_fed.transport.messages import Witness

MAX_PROOF = 64  # hashes; a proof of a log of 2**32 entries needs fewer


class WitnessProblem(Exception):
    """A checkpoint that must not be cosigned; the message says why, for the log and the DPO."""


def _parse(data: bytes) -> SignedCheckpoint:
    try:
        return SignedCheckpoint.from_json(json.loads(data))
    except (ValueError, AuditError, RecursionError) as exc:
        raise WitnessProblem(f"the checkpoint is not a signed checkpoint ({exc})") from None


def check_peer(crossings: Crossings, witness: Witness, *, peer: str) -> SignedCheckpoint:
    """The peer's signed checkpoint in ``witness``, once it is shown to be sound: signed by the
    peer with a partnership certificate, under this project, and extending the last checkpoint of
    the peer that this party witnessed.

    Raises
    ------
    WitnessProblem
        Saying what is wrong: above all, a log that shrank or was rewritten since last witnessed.
    """
    signed = _parse(witness.checkpoint)
    cp = signed.checkpoint
    if cp.party != peer:
        raise WitnessProblem(f"{peer} sent a checkpoint of {cp.party!r}'s log, not its own")
    if cp.project != crossings.project:
        raise WitnessProblem(f"{peer}'s checkpoint is for another project ({cp.project[:20]}…)")
    problems = signed.problems(ca=crossings.ca)
    if peer not in signed.signers:
        problems.append(f"{peer}'s checkpoint is not signed by {peer}")
    if problems:
        raise WitnessProblem("; ".join(problems))
    if len(witness.consistency) > MAX_PROOF:
        raise WitnessProblem(f"{peer}'s consistency proof is longer than any log needs")
    last = crossings.checkpoints.last(party=peer, cosigned_by=crossings.party)
    old_size, old_root = (
        (0, b"") if last is None else (last.checkpoint.size, bytes.fromhex(last.checkpoint.root))
    )
    if cp.size < old_size:
        raise WitnessProblem(
            f"{peer}'s audit log shrank: {cp.size} entries now, {old_size} when this party last "
            "witnessed it; entries were deleted"
        )
    if witness.since_size != old_size:
        raise WitnessProblem(
            f"{peer} proves its log from size {witness.since_size}, but this party last witnessed "
            f"it at {old_size}"
        )
    if old_size and not verify_consistency(
        old_size, cp.size, old_root, bytes.fromhex(cp.root), witness.consistency
    ):
        raise WitnessProblem(
            f"{peer}'s audit log does not extend the one this party witnessed at size "
            f"{old_size}: entries before it were rewritten, deleted or inserted"
        )
    return signed


def coordinator_offer(crossings: Crossings, *, round_id: str, peer: str) -> Witness | None:
    """What the coordinator's ``round_closed`` to ``peer`` carries: its checkpoint for the round,
    proved from the checkpoint ``peer`` last cosigned. The same bytes every time it is offered."""
    if crossings.signer is None:
        return None
    own = crossings.round_checkpoint(round_id)
    since = crossings.checkpoints.last(party=crossings.party, cosigned_by=peer)
    since_size = 0 if since is None else since.checkpoint.size
    seen = crossings.checkpoints.last(party=peer, cosigned_by=crossings.party)
    return Witness(
        checkpoint=own.line(),
        since_size=since_size,
        consistency=tuple(crossings.log.consistency_proof(since_size, own.checkpoint.size)),
        witnessed_size=0 if seen is None else seen.checkpoint.size,
    )


def node_answer(
    crossings: Crossings, witness: Witness, *, round_id: str, coordinator: str
) -> Witness:
    """A node's part: check the coordinator's checkpoint, cosign and keep it, and answer with its
    own checkpoint proved from the size the coordinator last witnessed.

    Raises
    ------
    WitnessProblem
        If the coordinator's checkpoint must not be cosigned, or it claims to have witnessed
        more of this node's log than there is.
    """
    assert crossings.signer is not None
    theirs = check_peer(crossings, witness, peer=coordinator)
    signature = crossings.signer.sign(theirs.checkpoint)
    crossings.checkpoints.append(theirs.with_signature(signature))
    own = crossings.signed_checkpoint(round_id)
    if witness.witnessed_size > own.checkpoint.size:
        raise WitnessProblem(
            f"the coordinator says it witnessed {witness.witnessed_size} entries of this node's "
            f"log, which holds {own.checkpoint.size}"
        )
    crossings.checkpoints.append(own)
    return Witness(
        checkpoint=own.line(),
        since_size=witness.witnessed_size,
        consistency=tuple(
            crossings.log.consistency_proof(witness.witnessed_size, own.checkpoint.size)
        ),
        cosignature=canonical_json(signature.to_json()),
    )


def coordinator_accept(crossings: Crossings, witness: Witness, *, round_id: str, peer: str) -> None:
    """The coordinator's part of a node's answer: check the node's cosignature on the round's
    checkpoint and the node's own checkpoint, then cosign and keep both.

    Raises
    ------
    WitnessProblem
        If either must not be kept.
    """
    assert crossings.signer is not None
    own = crossings.round_checkpoint(round_id)
    try:
        cosignature = Signature.from_json(json.loads(witness.cosignature))
    except (ValueError, AuditError, RecursionError):
        raise WitnessProblem(f"{peer} sent no usable cosignature") from None
    if cosignature.signer != peer:
        raise WitnessProblem(f"{peer} sent a cosignature made by {cosignature.signer!r}")
    problem = cosignature.problem(own.checkpoint, ca=crossings.ca)
    if problem:
        raise WitnessProblem(problem)
    theirs = check_peer(crossings, witness, peer=peer)
    crossings.checkpoints.append(own.with_signature(cosignature))
    crossings.checkpoints.append(theirs.with_signature(crossings.signer.sign(theirs.checkpoint)))

"""Verifying a DPO's folder of audit logs as a whole: ``oda-fed audit verify DIR``.

One log's hash chain only shows that nobody edited it without rewriting everything after. The
folder check adds what catches a party that rewrites, truncates or deletes its own log:

- **Checkpoints.** Every signed checkpoint found in any party's checkpoint file is checked: its
  signatures (and, with ``ca``, that the partnership CA issued the certificates), and that the
  owner's log still has that root at that size (an RFC 9162 consistency proof from the
  checkpoint to the log as it is now). A checkpoint that another party cosigned is one the owner
  cannot take back, so a log that no longer matches it was rewritten or cut.
- **Inclusion.** Every crossing before a party's latest cosigned checkpoint is proved to be in
  that checkpoint's tree; crossings after it are counted as not yet witnessed.
- **Parties.** Every party a log or checkpoint names (and, with ``project``, every partner and
  the coordinator) must have handed in its log.
- **Both sides.** Every crossing appears in the sender's and the recipient's log, with the same
  records and bytes (:func:`~oda_fed.audit.verify.cross_check`).
- **The agreement.** With ``project``, every entry is under that project's fingerprint and every
  crossing is one it allows (:mod:`oda_fed.audit.agreement`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from oda_fed.audit.checkpoint import SignedCheckpoint, read_checkpoints
from oda_fed.audit.entry import AuditEntry, is_local_kind
from oda_fed.audit.merkle import MerkleTree, verify_consistency, verify_inclusion
from oda_fed.audit.verify import LogReport, _iter_entries, _verify, cross_check, log_files
from oda_fed.errors import AuditError
from oda_fed.pki.identity import is_valid_name

if TYPE_CHECKING:
    from oda_fed.config import LoadedProject

__all__ = ["FolderReport", "verify_folder"]


@dataclass
class FolderReport:
    """What ``oda-fed audit verify`` found; :attr:`ok` only if every check passed.

    Attributes
    ----------
    logs
        Each log's own verification (format, hashes, sequence, chain).
    checkpoints
        Problems with signed checkpoints: bad signatures, or a log that no longer matches one.
    parties
        Parties expected to hand in a log that did not.
    crossings
        Crossings missing from one side, or logged with different counts.
    agreement
        Entries the project does not allow (only with a project).
    notes
        What a DPO should know that is not a failure: entries not yet witnessed, checks skipped.
    witnessed
        Per party, the size of its log covered by a checkpoint another party cosigned.
    """

    logs: list[LogReport]
    checkpoints: list[str] = field(default_factory=list)
    parties: list[str] = field(default_factory=list)
    crossings: list[str] = field(default_factory=list)
    agreement: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    witnessed: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.logs) and not (
            self.checkpoints or self.parties or self.crossings or self.agreement
        )


@dataclass
class _Party:
    name: str
    paths: list[Path] = field(default_factory=list)
    tree: MerkleTree = field(default_factory=MerkleTree)
    entries: list[AuditEntry] = field(default_factory=list)


def _load_party_logs(
    reports: list[LogReport], trees: dict[Path, MerkleTree]
) -> tuple[dict[str, _Party], list[str]]:
    parties: dict[str, _Party] = {}
    problems = []
    for report in reports:
        name = report.party
        if name is None and report.entries == 0 and is_valid_name(report.path.stem):
            name = report.path.stem  # an empty log: whose it is, its name says
        if name is None:
            continue
        if name in parties:
            # One log per party: a second file would let a party show the DPO whichever it likes.
            problems.append(
                f"{report.path}: a second log of {name} (the first is "
                f"{parties[name].paths[0]}); hand in one log per party"
            )
            continue
        party = parties[name] = _Party(name, [report.path], trees[report.path])
        party.entries = [e for _, e in _iter_entries(report.path)]
    return parties, problems


def _checkpoints(directory: Path) -> tuple[list[tuple[Path, SignedCheckpoint]], list[str]]:
    found, problems = [], []
    for path in sorted(directory.rglob("*.checkpoints.jsonl")):
        signed, bad = read_checkpoints(path)
        found += [(path, s) for s in signed]
        problems += bad
    return found, problems


def _check_checkpoint(
    path: Path, signed: SignedCheckpoint, parties: dict[str, _Party], ca: x509.Certificate | None
) -> list[str]:
    cp = signed.checkpoint
    where = f"{path.name}: {cp.party}'s checkpoint at size {cp.size} (round {cp.round or '-'})"
    problems = [f"{where}: {p}" for p in signed.problems(ca=ca)]
    if problems:
        return problems
    witnesses = [s for s in signed.signers if s != cp.party]
    held = f"signed by {cp.party}" + (
        f" and cosigned by {', '.join(witnesses)}" if witnesses else ""
    )
    party = parties.get(cp.party)
    if party is None:
        return [f"{where}, {held}: {cp.party}'s log is missing: it was deleted or not handed in"]
    tree = party.tree
    if tree.size < cp.size:
        return [
            f"{where}, {held}: {cp.party}'s log now holds {tree.size} entries, fewer than the "
            f"{cp.size} it had: entries were deleted"
        ]
    proof = tree.consistency_proof(cp.size)
    if not verify_consistency(cp.size, tree.size, bytes.fromhex(cp.root), tree.root(), proof):
        return [
            f"{where}, {held}: {cp.party}'s log does not extend it: entries before it were "
            "rewritten, deleted or inserted since it was signed"
        ]
    return []


def _prove_inclusion(party: _Party, signed: SignedCheckpoint) -> list[str]:
    """Every crossing of ``party`` before the checkpoint is in the checkpoint's tree."""
    cp = signed.checkpoint
    root = bytes.fromhex(cp.root)
    problems = []
    for index, entry in enumerate(party.entries[: cp.size]):
        if is_local_kind(entry.kind):
            continue
        leaf = bytes.fromhex(entry.hash)
        if not verify_inclusion(
            leaf, index, cp.size, party.tree.inclusion_proof(index, cp.size), root
        ):
            problems.append(
                f"{party.name}'s entry seq {entry.seq} ({entry.kind}) is not in the tree its "
                f"checkpoint at size {cp.size} signed"
            )
    return problems


def verify_folder(
    directory: Path,
    *,
    project: LoadedProject | None = None,
    ca: x509.Certificate | None = None,
    expected: Iterable[str] = (),
) -> FolderReport:
    """Verify every audit log and checkpoint under ``directory`` together.

    Parameters
    ----------
    directory
        The folder a DPO collected: each party's ``<party>.jsonl`` and
        ``<party>.checkpoints.jsonl``, in any layout below it.
    project
        The signed project the logs are held to; without it, the parties expected are those the
        logs name, and what crossed is not checked against an agreement.
    ca
        The partnership CA's certificate; without it, signatures are checked against the
        certificates they carry, but not that the CA issued those.
    expected
        More parties whose logs must be there.

    Raises
    ------
    AuditError
        If ``directory`` is not a folder.

    Examples
    --------
    >>> report = verify_folder(Path("audit"), project=load_project(Path("project.toml")))  # doctest: +SKIP
    >>> report.ok, report.witnessed  # doctest: +SKIP
    (True, {'coordinator': 212, 'council': 61, 'police': 58})
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AuditError(f"{directory} is not a folder; pass the folder that holds the audit logs")
    # One pass per log: its verification builds its Merkle tree as it goes.
    trees = {p: MerkleTree() for p in log_files(directory)}
    reports = [_verify(p, tree=tree) for p, tree in trees.items()]
    result = FolderReport(logs=reports)
    parties, result.parties = _load_party_logs(reports, trees)
    checkpoints, result.checkpoints = _checkpoints(directory)

    named = set(expected)
    for party in parties.values():
        for entry in party.entries:
            if not is_local_kind(entry.kind):  # a local act may name a refused stranger
                named.update((entry.sender, entry.recipient))
    for _, signed in checkpoints:
        named.add(signed.checkpoint.party)
        named.update(signed.signers)
    if project is not None:
        named.update([*project.project.partner_ids, "coordinator"])
    for name in sorted(named - set(parties)):
        result.parties.append(
            f"no audit log of {name}, which the "
            + (
                "project names"
                if project is not None and name in _parties_of(project)
                else "other logs name"
            )
            + f": every party hands in its log ({name}.jsonl)"
        )

    latest: dict[str, SignedCheckpoint] = {}
    seen_lines: set[bytes] = set()
    for path, signed in checkpoints:
        if signed.line() in seen_lines:
            continue
        seen_lines.add(signed.line())
        bad = _check_checkpoint(path, signed, parties, ca)
        result.checkpoints += bad
        cp = signed.checkpoint
        cosigned = any(s != cp.party for s in signed.signers)
        if not bad and cosigned and cp.size >= latest.get(cp.party, signed).checkpoint.size:
            latest[cp.party] = signed
    for name, party in sorted(parties.items()):
        signed = latest.get(name)
        result.witnessed[name] = 0 if signed is None else signed.checkpoint.size
        if signed is not None:
            result.checkpoints += _prove_inclusion(party, signed)
        unwitnessed = len(party.entries) - result.witnessed[name]
        if unwitnessed:
            result.notes.append(
                f"{name}: {unwitnessed} of {len(party.entries)} entries come after its last "
                "checkpoint another party cosigned, so only the chain and the other side's log "
                "vouch for them"
            )
    if ca is None:
        result.notes.append(
            "no CA certificate given (--ca): signatures were checked against the certificates "
            "they carry, not that the partnership CA issued them"
        )

    result.crossings = cross_check(reports)
    if project is not None:
        from oda_fed.audit.agreement import check_agreement

        result.agreement = check_agreement(
            project, {name: party.entries for name, party in parties.items()}
        )
    else:
        result.notes.append("no project given (--project): what crossed was not checked against it")
    return result


def _parties_of(project: LoadedProject) -> set[str]:
    return {*project.project.partner_ids, "coordinator"}

"""What a node will do: every instruction is checked against the project its DPO pinned.

Each check raises :class:`Refused` with a reason the coordinator is told (and the node's audit log
records), before the node reads, computes or sends anything. The reasons name settings, never
records.
"""

from __future__ import annotations

from pathlib import Path

from oda_fed.config import LOCAL, LoadedProject, Product
from oda_fed.transport.messages import Instruction


class Refused(Exception):
    """An instruction this node will not carry out; the reason goes back to the coordinator."""


def check_project(loaded: LoadedProject, instruction: Instruction) -> None:
    """The instruction must name the pinned project."""
    if instruction.project_fingerprint != loaded.fingerprint:
        raise Refused(
            f"project fingerprint mismatch: the instruction names "
            f"{instruction.project_fingerprint or '(none)'}, this node is pinned to "
            f"{loaded.fingerprint}"
        )


def check_clk_bits(loaded: LoadedProject, clk_bits: int) -> None:
    """The coordinator must ask for the CLK length the project fixes."""
    bits = loaded.project.linkage.wire_bits
    if clk_bits != bits:
        raise Refused(f"asked for {clk_bits}-bit CLKs; the project says {bits}")


def check_share(loaded: LoadedProject, *, partner: str, product_id: str, attribute: str) -> None:
    """Only an attribute the project lets this partner share for that product may leave."""
    if not loaded.project.attribute_allowed(
        partner=partner, product_id=product_id, attribute=attribute
    ):
        raise Refused(
            f"the project does not allow sharing '{attribute}' for product '{product_id}'"
        )


def check_local(loaded: LoadedProject, *, partner: str, product_id: str) -> Product:
    """Only a ``local`` product this partner owns is computed here, and only its table leaves."""
    product = next((p for p in loaded.project.products if p.id == product_id), None)
    if product is None or product.kind != LOCAL or product.owner != partner:
        raise Refused(
            f"the project has no local product '{product_id}' for this partner to compute"
        )
    return product


def shareable_attributes(loaded: LoadedProject, partner: str) -> set[str]:
    """The attributes the project's products take from this partner, prepared with its CLKs
    (a ``local`` product's never leave: the node tabulates them itself)."""
    return {
        ref.name
        for product in loaded.project.products
        for ref in product.attributes()
        if ref.partner == partner
    }


def check_recipient(loaded: LoadedProject, *, partner: str, product_id: str) -> None:
    """A product is accepted only by a recipient the project names."""
    product = next((p for p in loaded.project.products if p.id == product_id), None)
    if product is None or partner not in product.recipients:
        raise Refused(f"this partner is not a recipient of product '{product_id}'")


def file_name(name: str) -> str:
    """A released file's name with no folder in it: the sender never chooses a path here.

    Examples
    --------
    >>> file_name("../../etc/passwd")
    'passwd'
    """
    base = Path(name).name
    if not base or base.startswith("."):
        raise Refused(f"unusable file name {name[:80]!r} in release")
    return base

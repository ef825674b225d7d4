"""``oda-fed pki``: the partnership CA, certificates for mutual TLS, and the linkage secret."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from oda_fed.cli._common import call, console, fail

app = typer.Typer(
    help="The partnership CA, certificates, their register and revocation, and the linkage secret.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="Partner id, or the coordinator/operator name.")]
RoleOption = Annotated[str, typer.Option(help="node, coordinator or operator.")]
HostOption = Annotated[list[str] | None, typer.Option(help="Host name or IP (coordinator).")]
CaDirOption = Annotated[Path, typer.Option(help="The CA folder.")]
DaysOption = Annotated[int, typer.Option(help="Validity in days.")]


@app.command("init")
def pki_init(
    dir: Annotated[Path, typer.Option(help="Folder for ca.key and ca.crt.")] = Path("ca"),
    name: Annotated[str, typer.Option(help="The CA's name.")] = "oda-fed partnership CA",
    days: DaysOption = 3650,
) -> None:
    """Create the partnership CA."""
    from oda_fed.pki import init_ca

    console.print(f"CA certificate: {call(init_ca, dir, name=name, days=days)}")


@app.command("request")
def pki_request(
    name: NameArgument,
    role: RoleOption = "node",
    out: Annotated[Path, typer.Option(help="Folder for NAME.key and NAME.csr.")] = Path("."),
    host: HostOption = None,
) -> None:
    """Make a private key and a certificate signing request, on the machine that will use them."""
    from oda_fed.pki import create_request

    csr = call(create_request, name=name, role=role, out_dir=out, hosts=host or ())
    console.print(f"request: {csr}  (send it to the CA; the key stays here)")


@app.command("sign")
def pki_sign(
    csr: Annotated[Path, typer.Argument(help="The NAME.csr file.")],
    ca_dir: CaDirOption = Path("ca"),
    out: Annotated[Path | None, typer.Option(help="Where to write NAME.crt.")] = None,
    days: DaysOption = 825,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Sign without asking (for scripts).")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            help="The new node certificate replaces the valid one this CA issued for the same "
            "partner, which is revoked (superseded) once it is signed. Without it a second "
            "valid node certificate for a partner is refused."
        ),
    ] = False,
) -> None:
    """Sign a certificate request with the partnership CA, once you confirm the role and name it
    asks for (a certificate for a partner's name can act as that partner). One valid
    node certificate per partner: a renewal is signed with --replace."""
    from oda_fed.pki.ca import read_request, sign_request
    from oda_fed.pki.register import read_register

    identity, hosts = call(read_request, csr)
    if not yes:
        valid = [e for e in call(read_register, ca_dir)
                 if e.name == identity.name and e.status() == "valid"]  # fmt: skip
        console.print(
            f"[bold]{escape(str(csr))}[/] asks for a [bold]{identity.role}[/] certificate for "
            f"[bold]{escape(identity.name)}[/]"
            + (f", hosts {escape(', '.join(hosts))}" if hosts else "")
            + f", valid {days} days.",
            highlight=False,
        )
        if valid:
            serials = ", ".join(f"{e.serial} ({e.role})" for e in valid)
            then = (
                "It replaces it: the old one is revoked once this is signed; give the "
                "coordinator the new CRL (ca.crl)."
                if replace
                else "Sign with --replace if it replaces it; otherwise it is refused."
            )
            console.print(
                f"[yellow]this CA has already issued a valid certificate for "
                f"'{escape(identity.name)}': {serials}.[/] {then}",
                highlight=False,
            )
        if not typer.confirm("Sign it?", default=False):
            fail("not signed", exit_code=1)
    cert = call(sign_request, ca_dir=ca_dir, csr_path=csr, out_path=out, days=days, replace=replace)
    console.print(f"certificate: {cert}")


@app.command("list")
def pki_list(ca_dir: CaDirOption = Path("ca")) -> None:
    """Every certificate the CA has signed: serial, role, name, fingerprint, validity, status."""
    from rich.table import Table

    from oda_fed.pki.register import read_register

    entries = call(read_register, ca_dir)
    table = Table("serial", "role", "name", "fingerprint (sha256)", "not before", "not after",
                  "status", title=f"certificates signed by {escape(str(ca_dir))}")  # fmt: skip
    colour = {"valid": "green", "expired": "yellow", "revoked": "red"}
    for e in entries:
        status = e.status()
        shown = f"[{colour[status]}]{status}[/]"
        if e.revoked_at:
            shown += f" {escape(e.revoked_at)}: {escape(e.reason)}"
        table.add_row(
            e.serial, e.role, escape(e.name), e.fingerprint.removeprefix("sha256:")[:16] + "…",
            e.not_before, e.not_after, shown,
        )  # fmt: skip
    console.print(table)
    if not entries:
        console.print("no certificates recorded yet (the register starts with `oda-fed pki init`)")


@app.command("revoke")
def pki_revoke(
    which: Annotated[
        str,
        typer.Argument(
            help="Serial (as `pki list` shows it), the name of the one valid certificate with "
            "that name, or a certificate file."
        ),
    ],
    reason: Annotated[
        str,
        typer.Option(
            # The codes of oda_fed.pki.register.REASON_CODES (a test holds the two together).
            help="Why, for the register. Start it with an RFC 5280 reason code for the revocation "
            "list to carry it: key-compromise, ca-compromise, affiliation-changed, superseded, "
            "cessation-of-operation, privilege-withdrawn (e.g. 'key-compromise: laptop "
            "stolen'); any other reason is unspecified."
        ),
    ],
    ca_dir: CaDirOption = Path("ca"),
) -> None:
    """Revoke a certificate: mark it in the register and rewrite the CA's revocation list
    (ca.crl), which the coordinator enforces (its revocation_list setting)."""
    from oda_fed.pki.register import CRL_FILE, reason_code, revoke

    entry = call(revoke, ca_dir, which, reason=reason)
    console.print(
        f"revoked certificate {entry.serial} ({entry.role} '{escape(entry.name)}'): "
        f"{escape(entry.reason)} (reason code: {reason_code(entry.reason).name})"
        f"\nrevocation list: {escape(str(ca_dir / CRL_FILE))} (copy it to "
        "the coordinator's revocation_list; it is read again when it changes)",
        highlight=False,
    )


@app.command("crl")
def pki_crl(ca_dir: CaDirOption = Path("ca")) -> None:
    """Write the CA's revocation list (ca.crl) again from its register, e.g. for a CA made before
    oda-fed kept one."""
    from oda_fed.pki.register import write_crl

    console.print(f"revocation list: {call(write_crl, ca_dir)}")


@app.command("issue")
def pki_issue(
    name: NameArgument,
    role: RoleOption = "node",
    ca_dir: CaDirOption = Path("ca"),
    out: Annotated[Path, typer.Option(help="Folder for NAME.key and NAME.crt.")] = Path("."),
    host: HostOption = None,
    days: DaysOption = 825,
) -> None:
    """Make a key and certificate in one step (prefer request + sign for node keys)."""
    from oda_fed.pki import issue

    cert, key = call(
        issue, ca_dir=ca_dir, name=name, role=role, out_dir=out, hosts=host or (), days=days
    )
    console.print(f"certificate: {cert}\nkey: {key}")


@app.command("secret")
def pki_secret(out: Annotated[Path, typer.Option(help="Where to write the secret.")]) -> None:
    """Generate a random linkage secret (partners only: never give it to the coordinator)."""
    from oda_fed.pki import new_secret

    console.print(f"linkage secret: {call(new_secret, out)} (mode 0600)")

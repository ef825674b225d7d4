"""``oda-fed pki``: the partnership CA, certificates for mutual TLS, and the linkage secret."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from oda_fed.cli._common import call, console

app = typer.Typer(
    help="The partnership CA, certificates and the linkage secret.", no_args_is_help=True
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
) -> None:
    """Sign a certificate request with the partnership CA."""
    from oda_fed.pki import sign_request

    cert = call(sign_request, ca_dir=ca_dir, csr_path=csr, out_path=out, days=days)
    console.print(f"certificate: {cert}")


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

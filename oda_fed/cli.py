"""The ``oda-fed`` command line. Thin: it parses, calls the library and prints.

Exit codes: 0 success; 1 other error; 2 configuration; 3 input data; 4 project mismatch;
5 certificate or identity; 6 audit verification failed; 7 protocol error from the other side.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from oda_fed import __version__
from oda_fed.errors import OdaFedError

console = Console(log_path=False)
err_console = Console(stderr=True)

app = typer.Typer(
    name="oda-fed",
    help="Privacy-preserving federated record linkage and disclosure-controlled analysis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
pki_app = typer.Typer(
    help="The partnership CA, certificates and the linkage secret.", no_args_is_help=True
)
coordinator_app = typer.Typer(
    help="Run and operate the coordinator (the ODA's linkage unit).", no_args_is_help=True
)
node_app = typer.Typer(help="Run a partner's node.", no_args_is_help=True)
audit_app = typer.Typer(help="Verify and summarise audit logs (for DPOs).", no_args_is_help=True)
project_app = typer.Typer(help="Inspect a project agreement.", no_args_is_help=True)
index_app = typer.Typer(
    help="Inspect a linked index (made by `oda-fed link --index`).", no_args_is_help=True
)
for sub, name in (
    (pki_app, "pki"),
    (coordinator_app, "coordinator"),
    (node_app, "node"),
    (audit_app, "audit"),
    (project_app, "project"),
    (index_app, "index"),
):
    app.add_typer(sub, name=name)

OnInvalid = Annotated[
    str,
    typer.Option(
        help="error: stop at a malformed value (e.g. 31/02/1980), naming its row and column; "
        "missing: count malformed values as missing and go on."
    ),
]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err_console, show_path=False)],
    )


def _run(fn, *args, **kwargs):
    """Call into the library; turn a user-fixable error into one line and its exit code."""
    try:
        return fn(*args, **kwargs)
    except OdaFedError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def _version(value: bool) -> None:
    if value:
        console.print(f"oda-fed {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Privacy-preserving federated record linkage and disclosure-controlled analysis."""


# --- demo -----------------------------------------------------------------------------------------


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for everything the demo writes.")] = Path(
        "demo-run"
    ),
    population: Annotated[
        int, typer.Option(min=100, help="People in the synthetic population.")
    ] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed for the synthetic data.")] = 7,
    errors: Annotated[str, typer.Option(help="Error level: low, medium or high.")] = "medium",
) -> None:
    """Run a whole federation on localhost: coordinator + 3 nodes over mutual TLS, one round."""
    from oda_fed.commands import run_demo_cli

    _run(run_demo_cli, console, workdir=workdir, population=population, seed=seed, errors=errors)


# --- synth ----------------------------------------------------------------------------------------


@app.command()
def synth(
    population: Annotated[int, typer.Option(min=1, help="Number of people.")],
    partners: Annotated[int, typer.Option(min=2, help="Number of partners (2-6).")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    errors: Annotated[str, typer.Option(help="Error level: low, medium or high.")] = "medium",
) -> None:
    """Write a synthetic population: one CSV per partner, truth.csv, and a matching project.toml."""
    from oda_fed.commands import write_synth

    paths = _run(
        write_synth, population=population, partners=partners, out=out, seed=seed, errors=errors
    )
    for path in paths:
        console.print(f"wrote {path}")


# --- encode / link --------------------------------------------------------------------------------


@app.command()
def encode(
    input: Annotated[Path, typer.Option(help="CSV with the records to encode.")],
    out: Annotated[Path, typer.Option(help="Output file.")],
    project: Annotated[
        Path | None, typer.Option(help="The project agreement (project.toml).")
    ] = None,
    clkhash_schema: Annotated[
        Path | None,
        typer.Option(help="A clkhash v3 linkage schema (JSON) instead of a project."),
    ] = None,
    secret_file: Annotated[Path | None, typer.Option(help="The linkage secret file.")] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            help="The secret as text (clkhash style, with --clkhash-schema). Other users of this "
            "machine can see command lines: prefer --secret-file."
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            help="npy (uint64 array), arrow (record_id + clk columns) or clkhash-json "
            "(default: clkhash-json with --clkhash-schema, else npy)."
        ),
    ] = None,
    partner: Annotated[
        str | None,
        typer.Option(help="Partner whose column layout applies (default: the input file's name)."),
    ] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows read per chunk.")] = 100_000,
    on_invalid: OnInvalid = "error",
) -> None:
    """Encode a CSV into CLKs, in bounded memory with a progress bar.

    With --project, the project's encoding (what nodes send). With --clkhash-schema, exactly the
    bits clkhash produces for that schema and secret.
    """
    from oda_fed.commands import encode_cli

    _run(
        encode_cli,
        console,
        project=project,
        clkhash_schema=clkhash_schema,
        secret_file=secret_file,
        secret=secret,
        input=input,
        out=out,
        partner=partner,
        fmt=format,
        chunk_rows=chunk_rows,
        on_invalid=on_invalid,
    )


@app.command()
def link(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Two or more CSV files; each file's name (without .csv) names its source."
        ),
    ],
    project: Annotated[Path, typer.Option(help="The project agreement (project.toml).")],
    secret_file: Annotated[Path, typer.Option(help="The linkage secret file.")],
    out: Annotated[Path, typer.Option(help="Where to write links.csv.")] = Path("links.csv"),
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Optional truth.csv (source,record_id,person_id) to report precision and recall."
        ),
    ] = None,
    all_records: Annotated[
        bool, typer.Option(help="Also write records linked to no other.")
    ] = False,
    on_invalid: OnInvalid = "error",
    index: Annotated[
        Path | None,
        typer.Option(
            help="A linked index file to create or update. Its entity ids stay stable across "
            "runs and go into links.csv: unchanged records keep theirs and are not matched again, "
            "new and changed records are matched against the other sources and join an existing "
            "entity or get a fresh id, records missing from a file are removed. Once the index "
            "holds other sources, one file is enough. It holds CLKs and record ids: keep it as "
            "you keep links.csv."
        ),
    ] = None,
    rebuild_index: Annotated[
        bool,
        typer.Option(
            help="With --index: link every record again (updates never merge or split "
            "entities) and keep each earlier entity id for the new entity it overlaps most."
        ),
    ] = False,
) -> None:
    """Embedded mode: link files in one process with no network and write links.csv.

    With --index, entity ids are stable from run to run and only new and changed records are
    matched.
    """
    from oda_fed.commands import link_cli

    _run(
        link_cli,
        console,
        files=files,
        project=project,
        secret_file=secret_file,
        out=out,
        truth=truth,
        all_records=all_records,
        on_invalid=on_invalid,
        index=index,
        rebuild_index=rebuild_index,
    )


# --- project --------------------------------------------------------------------------------------


@project_app.command("fingerprint")
def project_fingerprint(path: Annotated[Path, typer.Argument(help="project.toml")]) -> None:
    """Validate a project file and print the fingerprint a DPO pins in node.toml."""
    from oda_fed.config import load_project

    loaded = _run(load_project, path)
    console.print(loaded.fingerprint)


@project_app.command("explain")
def project_explain(
    path: Annotated[Path, typer.Argument(help="project.toml")],
    sample: Annotated[
        Path | None, typer.Option(help="A CSV of real records to measure the fill on.")
    ] = None,
    secret_file: Annotated[
        Path | None, typer.Option(help="Linkage secret (needed with --sample).")
    ] = None,
    partner: Annotated[
        str | None, typer.Option(help="Partner whose column layout the sample uses.")
    ] = None,
) -> None:
    """Print the encoding derived from the project and the expected fill of the filter."""
    from oda_fed.commands import explain_cli

    _run(
        explain_cli, console, project=path, sample=sample, secret_file=secret_file, partner=partner
    )


# --- index ----------------------------------------------------------------------------------------


@index_app.command("show")
def index_show(path: Annotated[Path, typer.Argument(help="The linked index file.")]) -> None:
    """Print a linked index's records per source, its entities and its last updates."""
    from oda_fed.commands import index_show_cli

    _run(index_show_cli, console, path=path)


# --- pki ------------------------------------------------------------------------------------------


@pki_app.command("init")
def pki_init(
    dir: Annotated[Path, typer.Option(help="Folder for ca.key and ca.crt.")] = Path("ca"),
    name: Annotated[str, typer.Option(help="The CA's name.")] = "oda-fed partnership CA",
    days: Annotated[int, typer.Option(help="Validity in days.")] = 3650,
) -> None:
    """Create the partnership CA."""
    from oda_fed.pki import init_ca

    console.print(f"CA certificate: {_run(init_ca, dir, name=name, days=days)}")


@pki_app.command("request")
def pki_request(
    name: Annotated[str, typer.Argument(help="Partner id, or the coordinator/operator name.")],
    role: Annotated[str, typer.Option(help="node, coordinator or operator.")] = "node",
    out: Annotated[Path, typer.Option(help="Folder for NAME.key and NAME.csr.")] = Path("."),
    host: Annotated[list[str] | None, typer.Option(help="Host name or IP (coordinator).")] = None,
) -> None:
    """Make a private key and a certificate signing request, on the machine that will use them."""
    from oda_fed.pki import create_request

    csr = _run(create_request, name=name, role=role, out_dir=out, hosts=host or ())
    console.print(f"request: {csr}  (send it to the CA; the key stays here)")


@pki_app.command("sign")
def pki_sign(
    csr: Annotated[Path, typer.Argument(help="The NAME.csr file.")],
    ca_dir: Annotated[Path, typer.Option(help="The CA folder.")] = Path("ca"),
    out: Annotated[Path | None, typer.Option(help="Where to write NAME.crt.")] = None,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 825,
) -> None:
    """Sign a certificate request with the partnership CA."""
    from oda_fed.pki import sign_request

    console.print(
        f"certificate: {_run(sign_request, ca_dir=ca_dir, csr_path=csr, out_path=out, days=days)}"
    )


@pki_app.command("issue")
def pki_issue(
    name: Annotated[str, typer.Argument(help="Partner id, or the coordinator/operator name.")],
    role: Annotated[str, typer.Option(help="node, coordinator or operator.")] = "node",
    ca_dir: Annotated[Path, typer.Option(help="The CA folder.")] = Path("ca"),
    out: Annotated[Path, typer.Option(help="Folder for NAME.key and NAME.crt.")] = Path("."),
    host: Annotated[list[str] | None, typer.Option(help="Host name or IP (coordinator).")] = None,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 825,
) -> None:
    """Make a key and certificate in one step (prefer request + sign for node keys)."""
    from oda_fed.pki import issue

    cert, key = _run(
        issue, ca_dir=ca_dir, name=name, role=role, out_dir=out, hosts=host or (), days=days
    )
    console.print(f"certificate: {cert}\nkey: {key}")


@pki_app.command("secret")
def pki_secret(out: Annotated[Path, typer.Option(help="Where to write the secret.")]) -> None:
    """Generate a random linkage secret (partners only: never give it to the coordinator)."""
    from oda_fed.pki import new_secret

    console.print(f"linkage secret: {_run(new_secret, out)} (mode 0600)")


# --- coordinator ----------------------------------------------------------------------------------


@coordinator_app.command("serve")
def coordinator_serve(
    config: Annotated[Path, typer.Option(help="coordinator.toml")],
    port_file: Annotated[
        Path | None, typer.Option(help="Write the bound port here once serving.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the coordinator over mutual TLS until SIGTERM or Ctrl-C."""
    from oda_fed.config import load_coordinator_config
    from oda_fed.coordinator.server import serve

    _logging(verbose)
    cfg = _run(load_coordinator_config, config)
    _run(serve, cfg, config_path=config, port_file=port_file)


@coordinator_app.command("start-round")
def coordinator_start_round(
    config: Annotated[Path, typer.Option(help="coordinator.toml (with an [operator] section).")],
    wait: Annotated[bool, typer.Option(help="Follow the round until it closes.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 3600,
) -> None:
    """Start a linkage round on a running coordinator."""
    from oda_fed.commands import start_round_cli

    _run(start_round_cli, console, config=config, wait=wait, timeout=timeout)


@coordinator_app.command("status")
def coordinator_status(
    config: Annotated[Path, typer.Option(help="coordinator.toml (with an [operator] section).")],
    round_id: Annotated[str, typer.Option("--round", help="Round id (default: the latest).")] = "",
) -> None:
    """Show a round's state and each partner's progress."""
    from oda_fed.commands import status_cli

    _run(status_cli, console, config=config, round_id=round_id)


# --- node -----------------------------------------------------------------------------------------


@node_app.command("run")
def node_run(
    config: Annotated[Path, typer.Option(help="node.toml")],
    rounds: Annotated[int | None, typer.Option(help="Exit after this many rounds close.")] = None,
    give_up_after: Annotated[
        float | None,
        typer.Option(help="Exit if the coordinator stays unreachable this many seconds."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the node: dial out to the coordinator and do this partner's part of each round."""
    from oda_fed.config import load_node_config
    from oda_fed.node.agent import NodeAgent

    _logging(verbose)
    cfg = _run(load_node_config, config)
    agent = _run(NodeAgent, cfg, config_path=config)
    try:
        _run(agent.run, rounds=rounds, give_up_after=give_up_after)
    except KeyboardInterrupt:
        pass
    finally:
        agent.close()


# --- audit ----------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    directory: Annotated[Path, typer.Argument(help="Folder holding *.jsonl audit logs.")],
) -> None:
    """Check every audit log's hash chain, and that both sides of each crossing agree."""
    from oda_fed.audit import cross_check, verify_dir

    reports = verify_dir(directory)
    if not reports:
        err_console.print(f"[bold red]error:[/] no audit logs (*.jsonl) under {directory}")
        raise typer.Exit(6)
    bad = False
    for report in reports:
        mark = "[green]ok[/]" if report.ok else "[bold red]FAILED[/]"
        console.print(f"{mark}  {report.path}  ({report.entries} entries, party {report.party})")
        for problem in report.problems:
            console.print(f"      {problem}", highlight=False)
        bad |= not report.ok
    mismatches = cross_check(reports) if len(reports) > 1 else []
    for problem in mismatches:
        console.print(f"[bold red]cross-check:[/] {problem}", highlight=False)
    if bad or mismatches:
        raise typer.Exit(6)
    console.print(f"[green]all {len(reports)} log(s) verified[/]")


@audit_app.command("report")
def audit_report(
    directory: Annotated[Path, typer.Argument(help="Folder holding *.jsonl audit logs.")],
) -> None:
    """Summarise what crossed each boundary: message kinds, records and bytes, per direction."""
    from oda_fed.audit import summarise_dir

    for summary in _run(summarise_dir, directory):
        log = summary.log
        table = Table(
            "sender",
            "recipient",
            "kind",
            "messages",
            "records",
            "bytes",
            title=f"{log.path} ({'verified' if log.ok else 'FAILED verification'})",
        )
        for c in summary.crossings:
            table.add_row(
                c.sender, c.recipient, c.kind, *map(str, (c.messages, c.records, c.bytes))
            )
        console.print(table)


def run() -> None:  # pragma: no cover - console entry point
    app(prog_name="oda-fed")
    sys.exit(0)

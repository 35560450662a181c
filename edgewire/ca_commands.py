"""`edgewire ca`: the project's certificate authority (edgewire/ca.py does
the work) for TLS between the boards, the edge's broker and the cloud."""

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DIR = Path("edgewire-ca")


def ca_dir_option(func: F) -> F:
    return click.option(
        "--dir",
        "folder",
        type=click.Path(path_type=Path, file_okay=False),
        default=DEFAULT_DIR,
        show_default=True,
        metavar="DIR",
        help="the CA's folder (keep it on a machine you trust, with a backup)",
    )(func)


@click.group("ca", invoke_without_command=True)
@click.pass_context
def ca_group(ctx: click.Context) -> None:
    """A certificate authority of your own, so that every hop (board to
    broker, edge to cloud) is encrypted and each side knows who is talking.

    \b
    One CA folder holds the CA's key and certificate; every peer trusts its
    ca.crt, and each gets a key and certificate of its own:
      edgewire ca init
      edgewire ca issue cloud --server cloud.example.org
      edgewire ca issue broker --server 192.168.1.20 --server pi.local
      edgewire ca issue pi-kitchen --kind client
      edgewire ca issue kitchen --kind device
      edgewire ca list
      edgewire ca revoke kitchen
    """
    # A bare `edgewire ca` is a request for this page, not a usage error.
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@ca_group.command("init")
@ca_dir_option
@click.option("--name", default="edgewire CA", show_default=True, help="the CA's common name")
@click.option(
    "--days",
    type=click.IntRange(1),
    default=3650,
    show_default=True,
    help="how long the CA is valid",
)
@click.option(
    "--force",
    is_flag=True,
    help="replace an existing CA (every certificate it issued stops being trusted)",
)
def init_command(folder: Path, name: str, days: int, force: bool) -> None:
    """Create the CA: a private key (ca.key, never copied anywhere), its
    certificate (ca.crt, which every peer trusts) and an empty revocation
    list (ca.crl, which the cloud checks).

    \b
    Example:
      edgewire ca init --dir /root/edgewire-ca --name "Acme telemetry CA"
    """
    from edgewire.ca import init_ca

    paths = init_ca(folder, name=name, days=days, force=force)
    click.echo(f"wrote {paths.key} (the CA's private key: keep it here, backed up)")
    click.echo(f"wrote {paths.cert} (give this to every board, edge and cloud as trust)")
    click.echo(f"wrote {paths.crl} (the revocation list)")


@ca_group.command("issue")
@click.argument("name")
@ca_dir_option
@click.option(
    "--kind",
    type=click.Choice(["server", "client", "device"]),
    default=None,
    help="server: the cloud or a broker; client: an edge (NAME = its edge id);"
    " device: a board (NAME = its device id)  [default: server with --server, else client]",
)
@click.option(
    "--server",
    "--host",
    "hosts",
    multiple=True,
    metavar="HOST",
    help="a server certificate for this DNS name or IP address, as clients dial it (repeat)",
)
@click.option(
    "--days",
    type=click.IntRange(1),
    default=825,
    show_default=True,
    help="how long the certificate is valid",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="DIR",
    help="write NAME.key and NAME.crt here [default: the CA folder's issued/]",
)
def issue_command(
    name: str, folder: Path, kind: Any, hosts: tuple[str, ...], days: int, out: Path | None
) -> None:
    """Give NAME a new private key and a certificate signed by the CA.

    \b
    NAME is 1 to 64 letters, digits, '-', '_' or '.'. Copy NAME.key (mode
    0600) and NAME.crt to where NAME runs, together with the CA's ca.crt:
      edgewire ca issue cloud --server cloud.example.org
      edgewire ca issue broker --server localhost --server 127.0.0.1
      edgewire ca issue pi-kitchen --out ./pi-kitchen        (a client: an edge)
      edgewire ca issue kitchen --kind device
    """
    from edgewire.ca import issue

    if kind is None:
        kind = "server" if hosts else "client"
    paths = issue(folder, name, kind, hosts=hosts, days=days, out=out)
    click.echo(f"wrote {paths.key} (private: copy it only to {name})")
    click.echo(f"wrote {paths.cert}")


@ca_group.command("revoke")
@click.argument("name")
@ca_dir_option
def revoke_command(name: str, folder: Path) -> None:
    """Revoke every certificate issued to NAME so far (a lost board, a
    retired edge): NAME is refused once the cloud has the new ca.crl.

    \b
    Example:
      edgewire ca revoke kitchen
    A later `edgewire ca issue kitchen ...` makes a new, valid certificate.
    """
    from edgewire.ca import revoke

    click.echo(f"wrote {revoke(folder, name)} (give it to the cloud)")


@ca_group.command("list")
@ca_dir_option
def list_command(folder: Path) -> None:
    """List the certificates the CA issued: name, kind, expiry and whether
    each is valid, expired or revoked."""
    from edgewire.ca import list_issued

    certs = list_issued(folder)
    if not certs:
        click.echo(f"no certificates issued yet by the CA in {folder}")
        return
    now = datetime.now(UTC)
    rows = [("NAME", "KIND", "NOT AFTER", "STATUS", "SERIAL")]
    for cert in certs:
        status = "revoked" if cert.revoked else "expired" if cert.not_after < now else "valid"
        expiry = f"{cert.not_after:%Y-%m-%d %H:%M} UTC"
        rows.append((cert.name, cert.kind, expiry, status, f"{cert.serial:x}"))
    click.echo(_table(rows))


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )

"""``tusk auth …``: who am I, tokens, roles and the audit log.

Authentication is on when the services have ``TUSK_API_TOKENS`` (the administrators' tokens).
Administrators make a token per person or service; owners of a repo or pipeline grant roles
on it: ``reader`` sees it, ``writer`` changes it (puts, commits; runs and stops a pipeline),
``owner`` also deletes it and grants roles on it. Whoever creates a repo or a pipeline owns it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import typer
from rich.markup import escape

from tusk.auth.principal import parse_resource
from tusk.errors import InvalidArgument
from tusk_cli.common import JsonOption, connect, note, print_json, run, show, stdout, table, when

app = typer.Typer(
    help="Who you are, tokens, roles on repos and pipelines, and the audit log.\n\n"
    "Authentication is on when the services have TUSK_API_TOKENS (administrators' tokens). "
    "Roles on a repo or pipeline: **reader** sees it; **writer** also changes it (commits, "
    "puts; updates, stops and starts a pipeline); **owner** also deletes it and grants roles "
    "on it; **admin** may do anything, and makes tokens. Whoever creates a repo or pipeline "
    "owns it.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
token_app = typer.Typer(
    help="Make, list and revoke tokens (administrators).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(token_app, name="token")

IdentityArg = Annotated[
    str,
    typer.Argument(metavar="IDENTITY", help="A person or service, e.g. alice.", show_default=False),
]
ResourceArg = Annotated[
    str | None,
    typer.Argument(
        metavar="RESOURCE",
        help="repo:NAME or pipeline:NAME (NAME may be * for every one); none for admin.",
        show_default=False,
    ),
]
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _seconds(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidArgument(f"--expires {text!r}: give a number and a unit, e.g. 90d, 12h, 30m")
    return int(match[1]) * _UNITS[match[2]]


def _resource(text: str | None) -> str | None:
    return str(parse_resource(text)) if text is not None else None


@app.command("whoami")
def whoami(as_json: JsonOption = False) -> None:
    """Show who your token (TUSK_TOKEN) belongs to and the roles it holds."""

    async def main() -> None:
        async with connect() as client:
            me = await client.whoami()
        if as_json:
            print_json(me)
            return
        stdout.print(f"{escape(me.name)}{' (admin)' if me.admin else ''}")
        if me.name == "anonymous" and me.admin:
            note("authentication is off (the services have no TUSK_API_TOKENS)")
        if me.worker is not None:
            stdout.print(f"worker of job {me.worker.job} of pipeline {me.worker.pipeline}")
        for grant in me.grants:
            stdout.print(f"{grant.role} on {escape(grant.resource or '')}")

    run(main())


@token_app.command("create")
def create_token(
    identity: IdentityArg,
    description: Annotated[
        str, typer.Option("--description", "-d", help="What the token is for.")
    ] = "",
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="Lifetime, e.g. 90d, 12h (default: until revoked)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Make a token for IDENTITY and print it: it is shown once (only its hash is stored).

    Example: `tusk auth token create alice -d laptop --expires 90d`, then
    `tusk auth grant alice writer repo:raw`.
    """

    async def main() -> None:
        lifetime = _seconds(expires) if expires else None
        async with connect() as client:
            created = await client.create_token(
                identity, description=description, expires_in_seconds=lifetime
            )
        if as_json:
            print_json(created)
            return
        stdout.print(created.token)
        note(
            f"token {created.id} for [bold]{escape(identity)}[/]"
            + (f", expires {when(created.expires_at)}" if created.expires_at else "")
            + "; it is shown only now: give it as TUSK_TOKEN"
        )

    run(main())


@token_app.command("list")
def list_tokens(
    identity: Annotated[
        str | None, typer.Option("--identity", "-i", help="Only this identity's.")
    ] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked tokens.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List tokens (never their secrets)."""

    async def main() -> None:
        async with connect() as client:
            tokens = await client.list_tokens(identity=identity, revoked=revoked)
        if as_json:
            print_json(tokens)
            return
        grid = table("ID", "IDENTITY", "CREATED", "BY", "EXPIRES", "REVOKED", "DESCRIPTION")
        for t in tokens:
            grid.add_row(
                t.id,
                escape(t.identity),
                when(t.created_at),
                escape(t.created_by),
                when(t.expires_at) if t.expires_at else "never",
                when(t.revoked_at) if t.revoked_at else "",
                escape(t.description),
            )
        show(grid)

    run(main())


@token_app.command("revoke")
def revoke_token(
    token_id: Annotated[
        str, typer.Argument(metavar="ID", help="From `tusk auth token list`.", show_default=False)
    ],
) -> None:
    """Revoke a token: it stops working at once on the repo service, and within
    TUSK_AUTH_CACHE_SECONDS (default 5) on the others."""

    async def main() -> None:
        async with connect() as client:
            await client.revoke_token(token_id)
        note(f"revoked token {escape(token_id)}")

    run(main())


@app.command("grant")
def grant(
    identity: IdentityArg,
    role: Annotated[
        Literal["reader", "writer", "owner", "admin"],
        typer.Argument(metavar="ROLE", help="reader, writer, owner or admin.", show_default=False),
    ],
    resource: ResourceArg = None,
) -> None:
    """Give IDENTITY a ROLE on RESOURCE (replacing the role it had there).

    Examples: `tusk auth grant bob reader repo:raw`, `tusk auth grant ci writer pipeline:train`,
    `tusk auth grant carol admin`.
    """

    async def main() -> None:
        async with connect() as client:
            await client.grant_role(identity, role, _resource(resource))
        note(f"{escape(identity)} is now {role}" + (f" on {escape(resource)}" if resource else ""))

    run(main())


@app.command("revoke")
def revoke(identity: IdentityArg, resource: ResourceArg = None) -> None:
    """Take IDENTITY's role on RESOURCE (its admin role without RESOURCE)."""

    async def main() -> None:
        async with connect() as client:
            await client.revoke_role(identity, _resource(resource))
        note(f"{escape(identity)} holds no role on {escape(resource or 'the cluster (admin)')}")

    run(main())


@app.command("roles")
def roles(
    identity: Annotated[str | None, typer.Option("--identity", "-i", help="Only its.")] = None,
    resource: Annotated[
        str | None, typer.Option("--resource", "-r", help="Only on this, e.g. repo:raw.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List role grants (admins see all; others their own and those on what they own)."""

    async def main() -> None:
        async with connect() as client:
            grants = await client.list_roles(identity=identity, resource=_resource(resource))
        if as_json:
            print_json(grants)
            return
        grid = table("IDENTITY", "ROLE", "RESOURCE", "GRANTED BY", "GRANTED")
        for g in grants:
            grid.add_row(
                escape(g.identity),
                g.role,
                escape(g.resource or "(all)"),
                escape(g.granted_by),
                when(g.granted_at),
            )
        show(grid)

    run(main())


@app.command("audit")
def audit(
    identity: Annotated[str | None, typer.Option("--identity", "-i", help="Only its.")] = None,
    resource: Annotated[
        str | None, typer.Option("--resource", "-r", help="Only on this, e.g. repo:raw.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only the last while, e.g. 1h, 7d.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Show the audit log, newest first: every write and grant, who made it and its status
    (administrators)."""

    async def main() -> None:
        start = datetime.now(UTC) - timedelta(seconds=_seconds(since)) if since else None
        async with connect() as client:
            entries = await client.audit(
                identity=identity, resource=resource, since=start, limit=limit
            )
        if as_json:
            print_json(entries)
            return
        grid = table("TIME", "IDENTITY", "ACTION", "STATUS", "RESOURCE", "TARGET")
        for e in entries:
            grid.add_row(
                when(e.at),
                escape(e.identity),
                e.action,
                str(e.status),
                escape(e.resource or ""),
                escape(e.target),
            )
        show(grid)

    run(main())

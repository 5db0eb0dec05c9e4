"""Text a database cannot store (a NUL, on PostgreSQL) is a 400 naming the field, on every
backend; nothing is half-written."""

from __future__ import annotations

import httpx

from tests.repo.helpers import error, ok


async def test_nul_in_descriptions_and_finish_errors_is_refused(
    client: httpx.AsyncClient,
) -> None:
    error(
        await client.post("/v1/repos", json={"name": "r", "description": "a\x00b"}),
        400,
        "description",
    )
    assert ok(await client.get("/v1/repos")) == []
    ok(await client.post("/v1/repos", json={"name": "r"}), 201)
    start = {"branch": "master", "description": "x\x00"}
    error(await client.post("/v1/repos/r/commits", json=start), 400, "description")
    commit = ok(await client.post("/v1/repos/r/commits", json={"branch": "master"}), 201)["id"]
    finish = await client.post(f"/v1/repos/r/commits/{commit}/finish", json={"error": "bad\x00"})
    error(finish, 400, "error")
    ok(await client.post(f"/v1/repos/r/commits/{commit}/finish", json={"error": "bad"}))

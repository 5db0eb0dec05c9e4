"""With TUSK_API_TOKENS set the console asks for a token, checks it with the services, and
sends it on as the user's: nothing is readable without one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.console.conftest import TOKEN
from tests.console.stack import Stack

HTML = {"Accept": "text/html"}


@pytest.fixture
async def browser(guarded_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=guarded_stack.console, headers=HTML, timeout=60) as c:
        yield c


@pytest.mark.parametrize("url", ["/", "/repos/raw", "/models", "/jobs/" + "0" * 32])
async def test_pages_ask_for_a_token_first(browser: httpx.AsyncClient, url: str) -> None:
    answer = await browser.get(url)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=")
    login = await browser.get(answer.headers["location"])
    assert login.status_code == 200
    assert '<label for="token">API token</label>' in login.text


async def test_the_event_stream_needs_a_token(guarded_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=guarded_stack.console) as client:
        answer = await client.get("/events")
    assert answer.status_code == 401


async def test_a_wrong_token_is_refused_by_the_services(browser: httpx.AsyncClient) -> None:
    answer = await browser.post("/login", data={"token": "guess", "next": "/"})
    assert answer.status_code == 401
    assert "refused" in answer.text
    assert "tusk_token" not in answer.headers.get("set-cookie", "")
    # A forged cookie gets no further than the login page either.
    browser.cookies.set("tusk_token", "guess")
    forged = await browser.get("/")
    assert forged.status_code == 303
    assert "refused=1" in forged.headers["location"]


async def test_the_right_token_opens_every_page(browser: httpx.AsyncClient) -> None:
    answer = await browser.post("/login", data={"token": TOKEN, "next": "/models"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/models"
    cookie = answer.headers["set-cookie"]
    assert "tusk_token=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert (await browser.get("/")).status_code == 200
    assert (await browser.get("/models")).status_code == 200
    signed_out = await browser.post("/logout")
    assert signed_out.status_code == 303
    assert (await browser.get("/")).status_code == 303


async def test_a_bearer_header_works_for_scripts(guarded_stack: Stack) -> None:
    headers = {**HTML, "Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=guarded_stack.console, headers=headers) as client:
        assert (await client.get("/")).status_code == 200


async def test_login_never_redirects_off_site(browser: httpx.AsyncClient) -> None:
    answer = await browser.post("/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert answer.headers["location"] == "/"

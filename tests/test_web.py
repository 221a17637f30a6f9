"""The web app as a whole: health, security headers, bad tokens, languages, templates, serving."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from mailer import tokens
from mailer.config import Settings
from mailer.contacts.contact import add_contact
from mailer.errors import ConfigError
from mailer.store.models import Contact
from mailer.web import create_app
from tests.support.web import Web, confirm_url, page_text, snapshot, subscription


def _contact(
    web: Web, address: str = "kim@example.org", slug: str = "news", language: str | None = "en"
) -> int:
    with web.db() as s:
        contact, _ = add_contact(s, address, slug, name="Kim", language=language)
        return contact.id


def _pages(web: Web, contact_id: int, list_id: int) -> list[str]:
    s = web.settings
    return [
        "/subscribe",
        "/subscribe/news",
        "/embed",
        "/embed/news",
        f"/u/{tokens.make_unsubscribe(s, contact_id, list_id)}",
        f"/u/{tokens.make_unsubscribe(s, contact_id, None)}",
        f"/preferences/{tokens.make_preferences(s, contact_id)}",
        f"/confirm/{tokens.make_confirm(s, contact_id, (list_id,))}",
        "/no-such-page",
    ]


def test_healthz(web: Web) -> None:
    r = web.client().get("/healthz")
    assert r.status_code == 200 and r.is_json
    assert r.get_json() == {"status": "ok", "database": "ok"}
    assert web.client().head("/healthz").status_code == 200


def test_healthz_reports_an_unreachable_database(web: Web) -> None:
    # A real database server that is not there: port 9 on this machine refuses connections.
    dead = create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 2}
    )
    web.app.config["MAILER_SESSIONS"] = sessionmaker(dead)
    r = web.client().get("/healthz")
    assert r.status_code == 503 and r.get_json() == {"status": "error", "database": "unreachable"}


def test_security_headers_and_no_inline_code(web: Web, lists: dict[str, int]) -> None:
    contact_id = _contact(web)
    for path in _pages(web, contact_id, lists["news"]):
        r = web.client().get(path)
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp, path
        assert "unsafe-inline" not in csp and "form-action 'self'" in csp
        if path.startswith("/embed"):
            assert "frame-ancestors 'self' https://hanul.example.org" in csp
        else:
            assert "frame-ancestors 'none'" in csp and r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in r.headers or path.startswith("/preferences/")
        page = page_text(r)
        assert "<script" not in page.lower(), path
        assert not re.search(r"\sstyle=|\son[a-z]+=", page), path
    css = web.client().get("/static/style.css")
    assert css.status_code == 200 and css.mimetype == "text/css"


def test_embed_frames_anywhere_without_a_website(settings: Settings) -> None:
    app = create_app(replace(settings, website=""))
    csp = app.test_client().get("/embed").headers["Content-Security-Policy"]
    assert "frame-ancestors *" in csp


def _forgeries(web: Web, contact_id: int, list_id: int) -> list[str]:
    s = web.settings
    good = tokens.make_unsubscribe(s, contact_id, list_id)
    payload, sig = good.split(".")
    other_payload = (
        base64.urlsafe_b64encode(json.dumps([contact_id + 1, list_id, None]).encode())
        .decode()
        .rstrip("=")
    )
    foreign = replace(s, secret_key="another-organisation's-key")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    return [
        "x",
        "abc.def",
        good[:-3],
        payload + "." + flipped,
        other_payload + "." + sig,
        tokens.make_unsubscribe(foreign, contact_id, list_id),
        tokens.make_preferences(s, contact_id),  # right key, wrong purpose
        tokens.make_confirm(s, contact_id, (list_id,)),
        "A" * 5000,
        good + ".extra",
    ]


def test_every_bad_token_gets_the_same_404(web: Web, lists: dict[str, int]) -> None:
    contact_id = _contact(web)
    reference = web.client().get("/no-such-page")
    assert reference.status_code == 404
    expected = page_text(reference)
    s = web.settings
    bad = _forgeries(web, contact_id, lists["news"])
    bad_prefs = [t for t in bad if t != tokens.make_preferences(s, contact_id)] + [
        tokens.make_unsubscribe(s, contact_id, lists["news"])
    ]
    bad_confirm = [t for t in bad if t != tokens.make_confirm(s, contact_id, (lists["news"],))] + [
        tokens.make_preferences(s, contact_id)
    ]
    before = snapshot(web)
    for prefix, candidates in (
        ("/u/", bad),
        ("/preferences/", bad_prefs),
        ("/confirm/", bad_confirm),
    ):
        for token in candidates:
            for method, data in (
                ("get", None),
                ("post", None),
                ("post", {"List-Unsubscribe": "One-Click"}),
            ):
                r = getattr(web.client(), method)(prefix + token, data=data)
                assert r.status_code == 404, (prefix, token, method)
                assert page_text(r) == expected, (prefix, token)
    r = web.client().post(f"/confirm/{bad[1]}/resend")
    assert r.status_code == 404 and page_text(r) == expected
    assert snapshot(web) == before


def test_erased_contact_tokens(web: Web, lists: dict[str, int]) -> None:
    from mailer.contacts.contact import erase

    contact_id = _contact(web)
    with web.db() as s:
        erase(s, "kim@example.org")
    st = web.settings
    assert (
        web.client().get(f"/preferences/{tokens.make_preferences(st, contact_id)}").status_code
        == 404
    )
    assert (
        web.client().get(f"/confirm/{tokens.make_confirm(st, contact_id, (1,))}").status_code == 404
    )
    # An old message's unsubscribe link still answers kindly (and one-click gets its 200).
    u = f"/u/{tokens.make_unsubscribe(st, contact_id, lists['news'])}"
    assert "no longer on any of our lists" in page_text(web.client().get(u))
    assert web.client().post(u, data={"List-Unsubscribe": "One-Click"}).status_code == 200


def test_language_choice(web: Web, lists: dict[str, int]) -> None:
    korean = _contact(web, "ko@example.org", language="ko")
    unsub = f"/u/{tokens.make_unsubscribe(web.settings, korean, lists['news'])}"
    c = web.client()
    assert '<html lang="en">' in page_text(c.get("/subscribe"))
    assert '<html lang="ko">' in page_text(c.get("/subscribe?lang=ko"))
    assert '<html lang="ko">' in page_text(
        c.get("/subscribe", headers={"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.5"})
    )
    assert '<html lang="en">' in page_text(
        c.get("/subscribe", headers={"Accept-Language": "fr-CA, de;q=0.5"})
    )
    assert '<html lang="en">' in page_text(c.get("/subscribe?lang=xx"))
    # The contact's own language beats the browser's; ?lang= beats both.
    assert "구독 해지" in page_text(c.get(unsub, headers={"Accept-Language": "en"}))
    assert "Unsubscribe" in page_text(c.get(unsub + "?lang=en"))
    assert "페이지를 찾을 수 없습니다" in page_text(c.get("/nothing?lang=ko"))


def test_every_page_speaks_korean(web: Web, lists: dict[str, int]) -> None:
    contact_id = _contact(web)
    for path in _pages(web, contact_id, lists["news"]):
        page = page_text(web.client().get(path + "?lang=ko"))
        assert '<html lang="ko">' in page, path
        words = re.sub(r"<[^>]+>", " ", page.split("<main", 1)[1].split("</main>")[0])
        hangul = re.findall(r"[\uac00-\ud7a3]", words)
        assert len(hangul) > 10, (path, words)


def test_templates_beside_the_config_override_the_shipped_ones(
    settings: Settings, lists: dict[str, int]
) -> None:
    folder = settings.templates_dir / "web"
    folder.mkdir(parents=True)
    (folder / "subscribe.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1>Our own form</h1>'
        '{% include "_subscribe_form.html" %}{% endblock %}',
        encoding="utf-8",
    )
    (folder / "style.css").write_text("body { color: rebeccapurple; }", encoding="utf-8")
    app = create_app(settings)
    page = page_text(app.test_client().get("/subscribe"))
    assert "<h1>Our own form</h1>" in page and 'name="email"' in page
    assert "rebeccapurple" in app.test_client().get("/static/style.css").get_data(as_text=True)
    # Pages not overridden still come from the package.
    assert "Page not found" in page_text(app.test_client().get("/nothing"))


def test_no_open_redirect(web: Web, lists: dict[str, int]) -> None:
    r = web.client().get("/?next=https://evil.example/")
    assert r.status_code == 302 and r.headers["Location"] == "/subscribe"
    for path in (
        "//evil.example/",
        "/subscribe?next=https://evil.example/",
        "/u/x?next=//evil.example",
        "/confirm/x?redirect=https://evil.example",
    ):
        r = web.client().get(path)
        assert r.headers.get("Location", "/subscribe") == "/subscribe", path
        assert "evil.example" not in page_text(r), path
    contact_id = _contact(web)
    u = f"/u/{tokens.make_unsubscribe(web.settings, contact_id, lists['news'])}"
    r = web.client().post(u + "?next=https://evil.example/", data={"scope": "all"})
    assert r.status_code == 200 and "Location" not in r.headers


def test_forwarded_headers_count_only_behind_a_trusted_proxy(
    web: Web, lists: dict[str, int]
) -> None:
    headers = {"X-Forwarded-For": "203.0.113.77", "X-Forwarded-Proto": "https"}
    c = web.client(REMOTE_ADDR="10.0.0.1")
    c.post("/subscribe", headers=headers, data={"email": "a@example.org", "list": "news"})
    trusted = Web(create_app(replace(web.settings, trust_proxy=True)), web.settings)
    trusted.client(REMOTE_ADDR="10.0.0.1").post(
        "/subscribe", headers=headers, data={"email": "b@example.org", "list": "news"}
    )
    web.send_notices()
    with web.db() as s:
        a = subscription(s, "a@example.org", "news")
        b = subscription(s, "b@example.org", "news")
        assert a is not None and a.consent_ip == "10.0.0.1"
        assert b is not None and b.consent_ip == "203.0.113.77"


def test_methods_and_sizes(web: Web, lists: dict[str, int]) -> None:
    contact_id = _contact(web)
    u = f"/u/{tokens.make_unsubscribe(web.settings, contact_id, lists['news'])}"
    r = web.client().put(u)
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    big = web.client().post(
        "/subscribe", data={"email": "a@example.org", "name": "x" * 200_000, "list": "news"}
    )
    assert big.status_code == 413
    with web.db() as s:
        assert s.scalar(select(Contact).where(Contact.email == "a@example.org")) is None


def test_create_app_needs_a_secret_key(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="secret_key"):
        create_app(replace(settings, secret_key=""))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_mailer_serve_runs_waitress(settings: Settings, tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailer",
            "--config",
            str(tmp_path / "mailer.toml"),
            "serve",
            "--port",
            str(port),
            "--threads",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    body = json.loads(r.read())
                    server = r.headers["Server"]
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        assert body == {"status": "ok", "database": "ok"}, proc.stderr and proc.stderr.read()
        assert server == "mailer"  # waitress with our ident, not the Flask development server
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert f"http://127.0.0.1:{port}" in err


def test_serve_help(settings: Settings, tmp_path: Path) -> None:
    from tests.support.cli import Cli

    out = Cli(tmp_path / "mailer.toml")("serve", "--help").output
    assert "--host" in out and "--port" in out and "--threads" in out


def test_confirmation_email_links_open_the_pages(web: Web, lists: dict[str, int]) -> None:
    web.subscribe(web.client(), "link@example.org", ["news"])
    (msg,) = web.outbox()
    assert web.client().get(web.path(confirm_url(msg))).status_code == 200

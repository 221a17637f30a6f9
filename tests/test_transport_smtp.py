"""One SMTP connection against a real server on 127.0.0.1, with and without PIPELINING: every
reply the server can give ends in the right outcome and leaves the connection usable."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from mailer.config import Settings
from mailer.delivery.transport import Outcome, SmtpConnection, SmtpTransport
from mailer.errors import TransportError
from tests.support.smtp import SmtpServer

MESSAGE = b"From: a@example.org\nTo: b@example.org\nSubject: hi\n\n.leading dot\nbody\n"


@pytest.fixture(params=[True, False], ids=["pipelining", "one-command-at-a-time"])
def server(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    srv = SmtpServer()
    srv.sink.pipelining = request.param
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def conn(server: SmtpServer) -> Iterator[SmtpConnection]:
    settings = Settings(transport="smtp", smtp_url=server.url())
    c = SmtpTransport(settings).open()
    yield c
    c.close()


def send(conn: SmtpConnection, to: str) -> tuple[int, str, Outcome]:
    reply = conn.send("bounces@example.org", to, MESSAGE)
    return reply.code, reply.text, reply.outcome


def test_the_server_offers_what_the_fixture_says(server: SmtpServer, conn: SmtpConnection) -> None:
    assert send(conn, "ok@example.org")[2] == Outcome.SENT
    assert conn.smtp is not None
    assert conn.smtp.has_extn("pipelining") == server.sink.pipelining


def test_every_reply_ends_in_its_outcome_and_the_connection_goes_on(
    server: SmtpServer, conn: SmtpConnection
) -> None:
    sink = server.sink
    sink.plan("later@example.org", "450 4.2.0 Mailbox busy")
    sink.plan("gone@example.org", "550 5.1.1 No such user")
    sink.plan("policy@example.org", "550 5.7.1 Policy")
    sink.plan("spam@example.org", "data:554 5.7.1 Looks like spam")
    outcomes = {
        to: send(conn, to)
        for to in (
            "first@example.org",
            "later@example.org",
            "gone@example.org",
            "policy@example.org",
            "spam@example.org",
            "last@example.org",
        )
    }
    assert outcomes["first@example.org"][2] == Outcome.SENT
    assert outcomes["later@example.org"][:2] == (450, "4.2.0 Mailbox busy")
    assert outcomes["later@example.org"][2] == Outcome.DEFERRED
    assert outcomes["gone@example.org"][2] == Outcome.BAD_ADDRESS
    assert outcomes["policy@example.org"][2] == Outcome.FAILED
    assert outcomes["spam@example.org"][:2] == (554, "5.7.1 Looks like spam")
    assert outcomes["last@example.org"][2] == Outcome.SENT
    # Refusals at RCPT left no half-open transaction behind: exactly the accepted ones arrived,
    # each with its own recipient and the dot-stuffed line restored.
    assert [r.rcpt_tos for r in sink.received] == [["first@example.org"], ["last@example.org"]]
    assert all(b"\r\n.leading dot\r\n" in r.data for r in sink.received)


def test_a_refused_sender_stops_the_run(server: SmtpServer, conn: SmtpConnection) -> None:
    server.sink.refuse_sender = "553 5.1.8 Sender domain rejected"
    with pytest.raises(TransportError, match=r"refused the sender bounces@example\.org: 553"):
        send(conn, "someone@example.org")
    assert server.sink.attempts == {}  # no RCPT was accepted for anyone
    server.sink.refuse_sender = None
    assert send(conn, "someone@example.org")[2] == Outcome.SENT


def test_a_deferred_sender_defers_the_message(server: SmtpServer, conn: SmtpConnection) -> None:
    server.sink.refuse_sender = "451 4.3.0 Try later"
    assert send(conn, "someone@example.org") == (451, "4.3.0 Try later", Outcome.DEFERRED)
    server.sink.refuse_sender = None
    assert send(conn, "someone@example.org")[2] == Outcome.SENT
    assert len(server.sink.received) == 1


def test_connection_dropped_after_the_data_is_in_doubt(
    server: SmtpServer, conn: SmtpConnection
) -> None:
    server.sink.plan("dropped@example.org", "drop-after-data")
    _code, text, outcome = send(conn, "dropped@example.org")
    assert outcome == Outcome.IN_DOUBT and "after the message was sent" in text
    assert conn.smtp is None  # closed; the next message opens a new connection
    assert send(conn, "next@example.org")[2] == Outcome.SENT


def test_closing_service_421_closes_and_reconnects(
    server: SmtpServer, conn: SmtpConnection
) -> None:
    server.sink.plan("busy@example.org", "421 4.3.2 Shutting down")
    assert send(conn, "busy@example.org")[:2] == (421, "4.3.2 Shutting down")
    assert conn.smtp is None
    assert send(conn, "next@example.org")[2] == Outcome.SENT


def test_an_address_with_a_line_break_never_reaches_the_server(
    server: SmtpServer, conn: SmtpConnection
) -> None:
    smuggled = "victim@example.org>\r\nRCPT TO:<other@example.org"
    code, text, outcome = send(conn, smuggled)
    assert (code, outcome) == (0, Outcome.FAILED) and "cannot be written" in text
    assert server.sink.attempts == {} and server.sink.received == []
    with pytest.raises(TransportError, match="envelope sender"):
        conn.send("bounces@example.org\r\nRSET", "ok@example.org", MESSAGE)
    assert send(conn, "ok@example.org")[2] == Outcome.SENT


def test_a_password_outside_ascii_logs_in_with_plain_in_utf8() -> None:
    """smtplib refuses such a password with UnicodeEncodeError (a traceback); RFC 4616 PLAIN
    carries it in UTF-8. A wrong one is still refused as a login, naming the user, never the
    password."""
    secret = "pässwörd-비밀"
    server = SmtpServer(auth=("press", secret)).start()
    try:
        url = f"smtp://press:{quote(secret)}@127.0.0.1:{server.port}?tls=none"
        SmtpTransport(Settings(transport="smtp", smtp_url=url)).check()
        wrong = f"smtp://press:{quote('pässwörd')}@127.0.0.1:{server.port}?tls=none"
        with pytest.raises(TransportError) as refused:
            SmtpTransport(Settings(transport="smtp", smtp_url=wrong)).check()
        assert "refused the login for 'press'" in str(refused.value)
        assert "pässwörd" not in str(refused.value)
    finally:
        server.stop()

"""The preflight's SMTP and web checks: the transport answers, TLS verifies, the login and
the envelope sender are accepted and the largest message fits; the one-click unsubscribe URL
answers a POST over https.

The SMTP session goes as far as MAIL FROM and ends with RSET and QUIT: no DATA, nothing is
sent. The password goes out only over a verified TLS connection (or to this machine) and is
never printed (mailer.masking).
"""

from __future__ import annotations

import http.client
import smtplib
import socket
import ssl
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from mailer import tokens
from mailer.config import Settings
from mailer.delivery import preflight_dns as pd
from mailer.delivery.preflight import Check
from mailer.delivery.transport import LOOPBACK, SmtpTarget, SmtpTransport
from mailer.errors import ConfigError, MailerError
from mailer.masking import mask_url

SMTP_CHECKS = ("smtp-connect", "smtp-tls", "smtp-auth", "smtp-size", "smtp-mail-from")
HTTP_TIMEOUT = 5.0
SAMPLE = Path(__file__).parents[1] / "samples" / "election-night.en.md"


def smtp_host(settings: Settings) -> str | None:
    """The SMTP server's host name, None for the outbox (or an unreadable smtp_url)."""
    if settings.transport != "smtp":
        return None
    try:
        return SmtpTarget.parse(settings.smtp_url).host
    except ConfigError:
        return None


def _skip_rest(done: list[Check], reason: str) -> list[Check]:
    named = {c.check for c in done}
    return done + [Check(n, "skipped", reason) for n in SMTP_CHECKS if n not in named]


def _reply(text: bytes | str) -> str:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return pd.shown(" ".join(raw.split()), 160)


def check_smtp(settings: Settings, release: str | Path | None = None) -> list[Check]:
    if settings.transport != "smtp":
        return _skip_rest([], "the transport is the outbox: nothing leaves this machine")
    try:
        transport = SmtpTransport(settings)
    except ConfigError as err:
        return _skip_rest([Check("smtp-connect", "error", str(err), "correct smtp_url")], "")
    target = transport.target
    where = f"{target.host}:{target.port}"
    out: list[Check] = []
    try:
        context = transport.ssl_context()
    except ConfigError as err:
        return _skip_rest([Check("smtp-tls", "error", str(err), "correct smtp_ca_file")], "")
    smtp: smtplib.SMTP | None = None
    try:
        try:
            if target.tls == "implicit":
                smtp = smtplib.SMTP_SSL(
                    target.host, target.port, timeout=settings.smtp_timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(target.host, target.port, timeout=settings.smtp_timeout)
            code, banner = smtp.ehlo()
        except ssl.SSLCertVerificationError as err:
            out.append(Check("smtp-connect", "ok", f"{where} answered"))
            out.append(_cert_error(where, err))
            return _skip_rest(out, "the TLS check failed")
        except (OSError, smtplib.SMTPException) as err:
            out.append(
                Check(
                    "smtp-connect",
                    "error",
                    f"cannot reach {mask_url(settings.smtp_url)}: {pd.shown(str(err))}",
                    "check smtp_url's host and port, and that this machine may connect to it",
                )
            )
            return _skip_rest(out, "the server cannot be reached")
        out.append(Check("smtp-connect", "ok", f"{where} answered: {code} {_reply(banner)}"))
        tls = _tls(smtp, target, context, where)
        out.append(tls)
        if tls.status == "error":
            return _skip_rest(out, "the TLS check failed")
        out.append(_auth(smtp, target, where))
        out.append(_size(smtp, settings, release))
        out.append(_mail_from(smtp, settings, where))
        return out
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def _cert_error(where: str, err: ssl.SSLCertVerificationError) -> Check:
    return Check(
        "smtp-tls",
        "error",
        f"{where}: the certificate cannot be verified: {err.verify_message or err.reason}",
        "use the server's proper name in smtp_url; for a private CA set smtp_ca_file to its "
        "certificate (a self-signed certificate can be given there too)",
    )


def _tls(smtp: smtplib.SMTP, target: SmtpTarget, context: ssl.SSLContext, where: str) -> Check:
    if target.tls == "implicit":
        sock = smtp.sock
        version = sock.version() if isinstance(sock, ssl.SSLSocket) else "?"
        return Check("smtp-tls", "ok", f"implicit TLS ({version}), certificate verified")
    if target.tls == "none":
        if target.host in LOOPBACK:
            return Check("smtp-tls", "ok", "no TLS: the server is on this machine")
        return Check(
            "smtp-tls",
            "warning",
            f"no TLS to {where}: messages cross the network in clear text",
            "remove ?tls=none from smtp_url (STARTTLS is the default) or use smtps://",
        )
    if not smtp.has_extn("starttls"):
        return Check(
            "smtp-tls",
            "error",
            f"{where} does not offer STARTTLS",
            "use smtps:// (port 465) if the server offers it; ?tls=none only for a server on "
            "this machine",
        )
    try:
        smtp.starttls(context=context)
        smtp.ehlo()
    except ssl.SSLCertVerificationError as err:
        return _cert_error(where, err)
    except (OSError, smtplib.SMTPException) as err:
        return Check("smtp-tls", "error", f"{where}: TLS handshake failed: {pd.shown(str(err))}")
    sock = smtp.sock
    version = sock.version() if isinstance(sock, ssl.SSLSocket) else "?"
    return Check("smtp-tls", "ok", f"STARTTLS ({version}), certificate verified")


def _auth(smtp: smtplib.SMTP, target: SmtpTarget, where: str) -> Check:
    if not target.username:
        return Check(
            "smtp-auth",
            "skipped",
            "smtp_url names no user: the server must take mail from this machine without a login",
        )
    try:
        smtp.login(target.username, target.password or "")
    except smtplib.SMTPAuthenticationError as err:
        return Check(
            "smtp-auth",
            "error",
            f"{where} refused the login for {target.username!r}: {err.smtp_code} "
            f"{_reply(err.smtp_error)}",
            "check the user name and password in smtp_url (or MAILER_SMTP_URL)",
        )
    except smtplib.SMTPNotSupportedError:
        return Check(
            "smtp-auth",
            "error",
            f"{where} does not offer AUTH",
            "use the provider's submission port (587 with STARTTLS, or 465)",
        )
    except UnicodeEncodeError:
        # smtplib sends AUTH PLAIN/LOGIN as ASCII; the error would quote nothing secret, but
        # say which part is at fault without showing it.
        return Check(
            "smtp-auth",
            "error",
            f"the user name or password in smtp_url holds non-ASCII characters: {where} "
            "cannot be sent them (SMTP AUTH takes ASCII)",
            "use an ASCII password (or ask the provider for an app password)",
        )
    except (OSError, smtplib.SMTPException) as err:
        return Check("smtp-auth", "error", f"{where}: login failed: {pd.shown(str(err))}")
    return Check("smtp-auth", "ok", f"login accepted for {target.username!r}")


def _size(smtp: smtplib.SMTP, settings: Settings, release: str | Path | None) -> Check:
    announced = smtp.esmtp_features.get("size", "").strip()
    limit = int(announced) if announced.isdigit() else 0
    try:
        largest, what = largest_message(settings, release)
    except MailerError as err:
        return Check("smtp-size", "warning", f"could not build a sample message: {err}")
    if not limit:
        return Check("smtp-size", "ok", f"no SIZE limit announced; {what}: {largest} bytes")
    if limit < largest:
        return Check(
            "smtp-size",
            "error",
            f"the server takes at most {limit} bytes (SIZE) and {what} is {largest} bytes",
            "attach fewer or smaller files (attach_max_bytes), or ask the provider for a "
            "larger limit",
        )
    return Check("smtp-size", "ok", f"SIZE {limit} bytes; {what}: {largest} bytes")


def largest_message(settings: Settings, release: str | Path | None) -> tuple[int, str]:
    """(bytes, what) of the largest message: the given release's, else the shipped sample's
    with attachments up to attach_max_bytes (the most a release may carry)."""
    # Lazy: rendering loads premailer and lxml; only this check builds a message.
    from mailer.delivery.message import CompiledVariant, Recipient, sender_for  # noqa: PLC0415
    from mailer.media.refs import with_media  # noqa: PLC0415
    from mailer.media.scan import scan_release  # noqa: PLC0415
    from mailer.releases.render import render_release  # noqa: PLC0415
    from mailer.releases.source import load_release  # noqa: PLC0415

    loaded = load_release(release or SAMPLE, settings.default_language)
    scan = scan_release(loaded, settings) if release else None
    if scan is not None:
        loaded = with_media(loaded, scan.refs)
    sender = sender_for(settings, settings.organisation_name, "press")
    largest = 0
    for rendered in render_release(loaded, settings).values():
        attached = sum(a.size for a in rendered.attachments)
        bare = replace(rendered, attachments=())
        built = CompiledVariant(bare, sender, settings).build(
            Recipient(0, "reader@example.org", "Reader Name", None, "<x@example.org>")
        )
        # base64: 4 bytes for 3, and a line break per 76 characters, plus each part's head.
        largest = max(
            largest, len(built) + attached * 4 * 78 // (3 * 76) + 400 * len(rendered.attachments)
        )
    if release:
        return largest, f"the largest message of {Path(release).name}"
    # 300 bytes for DKIM-Signature (mailer builds it per message).
    room = settings.attach_max_bytes * 4 * 78 // (3 * 76)
    return largest + room + 300, "a message with attachments up to attach_max_bytes"


def _mail_from(smtp: smtplib.SMTP, settings: Settings, where: str) -> Check:
    sender = settings.bounce_address
    # An internationalised envelope sender goes out with SMTPUTF8 (RFC 6531), as the sender
    # sends it; without the extension smtplib cannot write it at all.
    options = ["SMTPUTF8"] if not sender.isascii() and smtp.has_extn("smtputf8") else []
    try:
        code, reply = smtp.mail(sender, options)
        smtp.rset()
    except UnicodeEncodeError:
        return Check(
            "smtp-mail-from",
            "error",
            f"the envelope sender {sender} is not ASCII and {where} does not offer SMTPUTF8",
            "use an ASCII envelope_sender (an A-label domain: xn--...)",
        )
    except (OSError, smtplib.SMTPException) as err:
        return Check("smtp-mail-from", "error", f"{where}: MAIL FROM failed: {pd.shown(str(err))}")
    if 200 <= code < 300:
        return Check("smtp-mail-from", "ok", f"MAIL FROM:<{sender}> accepted")
    return Check(
        "smtp-mail-from",
        "error",
        f"{where} refused MAIL FROM:<{sender}>: {code} {_reply(reply)}",
        "use an envelope_sender (or from_address) the provider lets this login send as",
    )


# --- one-click unsubscribe --------------------------------------------------------------------


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address found through dns_resolver, still verified for the host name."""

    def __init__(self, host: str, port: int, address: str, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=HTTP_TIMEOUT, context=context)
        self.address = address
        self.context = context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), timeout=HTTP_TIMEOUT)
        self.sock = self.context.wrap_socket(raw, server_hostname=self.host)


def check_one_click(settings: Settings, lookup: pd.Dns | None) -> list[Check]:
    """POST a one-click unsubscribe (RFC 8058) for no one (contact 0): `mailer serve` knows the
    token and answers 200 without changing anything."""
    parts = urlsplit(settings.base_url)
    host = parts.hostname or ""
    if parts.scheme != "https":
        return [
            Check(
                "one-click",
                "error",
                f"base_url {settings.base_url} is not https: Gmail and Yahoo require one-click "
                "unsubscribe (RFC 8058) over https",
                "serve `mailer serve` behind https and set base_url to that address",
            )
        ]
    try:
        port = parts.port or 443
        addresses = lookup.addresses(host) if lookup is not None and not lookup.skips(host) else []
    except (ValueError, pd.DnsUnavailable):
        addresses = []
    if not addresses:
        return [Check("one-click", "warning", f"cannot check {host}: no address found in DNS", "")]
    url = tokens.unsubscribe_url(settings, tokens.make_unsubscribe(settings, 0, None))
    path = urlsplit(url).path
    conn = _PinnedHTTPS(host, port, addresses[0], ssl.create_default_context())
    try:
        conn.request(
            "POST",
            path,
            body="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        status = conn.getresponse().status
    except ssl.SSLCertVerificationError as err:
        return [
            Check(
                "one-click",
                "error",
                f"https://{host}: the certificate cannot be verified: {err.verify_message}",
                "install a certificate from a public CA (e.g. Let's Encrypt) for " + host,
            )
        ]
    except (OSError, http.client.HTTPException) as err:
        return [
            Check(
                "one-click",
                "warning",
                f"cannot check https://{host}:{port}: {pd.shown(str(err))}",
                "make sure `mailer serve` is reachable at base_url",
            )
        ]
    finally:
        conn.close()
    if status == 200:
        return [Check("one-click", "ok", f"https://{host} answers a one-click POST (200)")]
    if status == 404:
        return [
            Check(
                "one-click",
                "error",
                f"https://{host} answers 404 to a one-click POST: it is not `mailer serve` with "
                "this secret_key",
                "run `mailer serve` with the same mailer.toml (secret_key) behind base_url",
            )
        ]
    return [
        Check(
            "one-click",
            "error",
            f"https://{host} answers {status} to a one-click POST (it must take POST)",
            "forward POST requests to `mailer serve` (check the proxy's configuration)",
        )
    ]

"""The emails staff get from mailer: an invitation to the console and a password reset link.

Built and sent like the subscribers' confirmation emails (mailer.delivery.notices: DKIM,
envelope rules, test_recipient), in the staff member's language, straight away: a staff email
is rare and the person is waiting for it. A failure is the caller's to show (the CLI prints
the link anyway; the reset page says nothing that would tell one address from another).
"""

from __future__ import annotations

from collections.abc import Callable

from markupsafe import escape

from mailer import translations
from mailer.config import Settings, console_address
from mailer.delivery import notices
from mailer.delivery.transport import open_transport
from mailer.store.models import StaffUser


def invitation_link(settings: Settings, token: str) -> str:
    return f"{console_address(settings)}/admin/invite/{token}"


def reset_link(settings: Settings, token: str) -> str:
    return f"{console_address(settings)}/admin/reset/{token}"


def _role_name(role: str, t: Callable[..., str]) -> str:
    # Spelled out so that the translation test's extractor sees every role name.
    names = {
        "viewer": t("Viewer"),
        "editor": t("Editor"),
        "sender": t("Sender"),
        "admin": t("Admin"),
    }
    return names.get(role, role)


def compose(settings: Settings, user: StaffUser, kind: str, link: str) -> notices.OutgoingNotice:
    lang = user.language if user.language in translations.LANGUAGES else "en"
    org = str(settings.organisation_name)

    def t(message: str, **values: str) -> str:
        return translations.gettext(lang, message, **values)

    if kind == "invite":
        subject = t("You are invited to the %(org)s press console", org=org)
        lines = [
            t("Hello,"),
            t(
                "You have been given a %(role)s account on the press console of %(org)s. "
                "Open this link within 7 days to choose your password:",
                role=_role_name(user.role.value, t),
                org=org,
            ),
        ]
    else:
        subject = t("Reset your %(org)s console password", org=org)
        lines = [
            t("Hello,"),
            t(
                "Someone asked to reset the password of your console account. If it was you, "
                "open this link within an hour to choose a new one:"
            ),
        ]
    closing = t("If you did not expect this email, you can ignore it.")
    text = "\n\n".join([*lines, link, closing]) + "\n"
    html = (
        "<!doctype html><html><body>"
        + "".join(f"<p>{escape(line)}</p>" for line in lines)
        + f'<p><a href="{escape(link)}">{escape(link)}</a></p>'
        + f"<p>{escape(closing)}</p></body></html>"
    )
    return notices.OutgoingNotice(
        to=user.email, subject=subject, text=text, html=html, language=lang
    )


def send(settings: Settings, user: StaffUser, kind: str, link: str) -> None:
    """Send the email now (TransportError when the server does not take it)."""
    deliver(settings, compose(settings, user, kind, link))


def deliver(settings: Settings, notice: notices.OutgoingNotice) -> None:
    """Send a composed email now (TransportError when the server does not take it)."""
    conn = open_transport(settings).open()
    try:
        notices.send(settings, conn, notice)
    finally:
        conn.close()

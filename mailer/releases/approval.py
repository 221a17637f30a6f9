"""Approval of a release before it is sent (setting `require_approval`, off by default).

An editor (or anyone above) asks for approval of a draft's current version; every active user
with the sender role or higher is emailed; one of them who is not the release's author (nor the
one who asked) approves or rejects it, with a comment. "Approved" holds only while the draft's
current version is the one approved: a save after approval voids it, and the release must be
asked for again. Each request and decision is a `release_approval` row (the history on the
release's page) and an event in the audit log.

The emails are composed here, in each sender's language, and delivered by the caller after its
commit (mailer.staff.mail.deliver), as the console's password-reset emails are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from markupsafe import escape
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock, translations
from mailer.config import Settings, console_address
from mailer.delivery.notices import OutgoingNotice
from mailer.errors import MailerError
from mailer.releases.drafts import get_draft
from mailer.staff.roles import allows
from mailer.store import audit
from mailer.store.models import (
    ReleaseApproval,
    ReleaseDraft,
    ReleaseVersion,
    StaffRole,
    StaffUser,
)

State = Literal["none", "requested", "approved", "rejected", "voided"]
APPROVED, REJECTED = "approved", "rejected"
MAX_COMMENT = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


class ApprovalError(MailerError):
    """A request or decision the rules do not allow (the message says which rule)."""


@dataclass(frozen=True)
class ApprovalState:
    """Where a draft's approval stands for its current version."""

    state: State
    version: int  # the draft's current version
    latest: ReleaseApproval | None  # the newest request (of any version)
    required: bool  # the require_approval setting

    @property
    def may_send(self) -> bool:
        return not self.required or self.state == "approved"


def actor_of(user: StaffUser) -> str:
    return f"user:{user.email}"


def _is(user: StaffUser, who: str | None) -> bool:
    """Whether an actor string ("user:EMAIL", or a bare address) names this user."""
    return bool(who) and (who or "").lower() in (actor_of(user).lower(), user.email.lower())


def history(session: Session, draft_id: int) -> list[ReleaseApproval]:
    """Every request and decision for the draft, newest first."""
    return list(
        session.scalars(
            select(ReleaseApproval)
            .where(ReleaseApproval.draft_id == draft_id)
            .order_by(ReleaseApproval.id.desc())
        )
    )


def state(session: Session, settings: Settings, draft_id: int) -> ApprovalState:
    """The approval of the draft's current version: none asked, requested, approved, rejected,
    or voided (the newest request was for an older version that was approved or still waited:
    the release changed since)."""
    draft = get_draft(session, draft_id)
    latest = session.scalar(
        select(ReleaseApproval)
        .where(ReleaseApproval.draft_id == draft_id)
        .order_by(ReleaseApproval.id.desc())
        .limit(1)
    )
    found: State = "none"
    if latest is not None:
        if latest.version != draft.current_version:
            found = "voided" if latest.decision != REJECTED else "none"
        elif latest.decision == APPROVED:
            found = "approved"
        elif latest.decision == REJECTED:
            found = "rejected"
        else:
            found = "requested"
    return ApprovalState(found, draft.current_version, latest, settings.require_approval)


def waiting(session: Session) -> list[tuple[ReleaseDraft, ReleaseApproval]]:
    """Drafts whose current version waits for a sender's decision, oldest request first."""
    rows = session.execute(
        select(ReleaseDraft, ReleaseApproval)
        .join(ReleaseApproval, ReleaseApproval.draft_id == ReleaseDraft.id)
        .where(
            ReleaseApproval.decision.is_(None),
            ReleaseApproval.version == ReleaseDraft.current_version,
        )
        .order_by(ReleaseApproval.id)
    )
    return [(draft, row) for draft, row in rows]


def require_approved(session: Session, settings: Settings, draft_id: int, version: int) -> None:
    """Refuse a send of `version` when approval is required and that version is not approved."""
    if not settings.require_approval:
        return
    now = state(session, settings, draft_id)
    if now.version != version:
        raise ApprovalError(
            f"the release changed while you were sending (now version {now.version}): "
            "look at the plan again"
        )
    if now.state != "approved":
        reasons = {
            "none": "nobody has asked for its approval yet",
            "requested": "its approval has been asked for, and no sender has approved it yet",
            "rejected": "it was rejected",
            "voided": "it was changed after it was approved (the approval is void)",
        }
        raise ApprovalError(
            f"this release needs approval before it is sent (require_approval): "
            f"{reasons.get(now.state, now.state)}"
        )


def request(
    session: Session, settings: Settings, draft_id: int, user: StaffUser
) -> tuple[ReleaseApproval, list[OutgoingNotice]]:
    """Ask for approval of the draft's current version; returns the request and the emails to
    deliver (after the caller's commit) to every user who may approve it."""
    if not allows(user.role, StaffRole.EDITOR) or user.disabled:
        raise ApprovalError("only editors, senders and admins may ask for approval")
    draft = get_draft(session, draft_id)
    now = state(session, settings, draft_id)
    if now.state == "requested":
        raise ApprovalError(f"version {now.version} is waiting for approval already")
    if now.state == "approved":
        raise ApprovalError(f"version {now.version} is approved already")
    row = ReleaseApproval(
        draft_id=draft.id,
        version=draft.current_version,
        requested_by=actor_of(user),
        requested_at=clock.now(),
        comment="",
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "release.approval_requested",
        actor=actor_of(user),
        draft=draft.id,
        slug=draft.slug,
        version=draft.current_version,
    )
    notices = [
        compose(settings, approver, draft, user)
        for approver in approvers(session)
        if approver.id != user.id
    ]
    return row, notices


def decide(
    session: Session,
    settings: Settings,
    draft_id: int,
    user: StaffUser,
    *,
    approve: bool,
    comment: str = "",
) -> ReleaseApproval:
    """Approve or reject the request waiting for the draft's current version.

    Only a user with the sender role or higher, never an author of the release (who created
    the draft or wrote any of its versions so far) nor the one who asked. A rejection says why
    (`comment`)."""
    if not allows(user.role, StaffRole.SENDER) or user.disabled:
        raise ApprovalError("only senders and admins may approve or reject a release")
    text = _CONTROL.sub("", comment).strip()
    if len(text) > MAX_COMMENT:
        raise ApprovalError(f"comment: at most {MAX_COMMENT} characters, got {len(text)}")
    if not approve and not text:
        raise ApprovalError("comment: say why the release is rejected")
    draft = get_draft(session, draft_id)
    now = state(session, settings, draft_id)
    row = now.latest
    if now.state != "requested" or row is None:
        raise ApprovalError(
            {
                "approved": f"version {now.version} is approved already",
                "rejected": f"version {now.version} was rejected: it must be asked for again",
                "voided": (
                    f"the release changed since approval was asked for (now version "
                    f"{now.version}): it must be asked for again"
                ),
            }.get(now.state, "nobody has asked for approval of this release")
        )
    # Every author of every version up to the one asked about: a sender who wrote any of its
    # text (even under a colleague's later edit) is not the second pair of eyes.
    authors = session.scalars(
        select(ReleaseVersion.author).where(
            ReleaseVersion.draft_id == draft_id, ReleaseVersion.number <= row.version
        )
    ).all()
    if (
        _is(user, row.requested_by)
        or _is(user, draft.created_by)
        or any(_is(user, author) for author in authors)
    ):
        raise ApprovalError(
            "you wrote this release or asked for its approval: another sender must decide"
        )
    row.decision = APPROVED if approve else REJECTED
    row.decided_by = actor_of(user)
    row.decided_at = clock.now()
    row.comment = text
    audit.record(
        session,
        "release.approved" if approve else "release.rejected",
        actor=actor_of(user),
        draft=draft.id,
        slug=draft.slug,
        version=row.version,
        comment=text,
    )
    session.flush()
    return row


def approvers(session: Session) -> list[StaffUser]:
    """Active users who may approve: the sender role or higher, invitation accepted."""
    users = session.scalars(
        select(StaffUser)
        .where(StaffUser.disabled.is_(False), StaffUser.password_hash.is_not(None))
        .order_by(StaffUser.id)
    )
    return [u for u in users if allows(u.role, StaffRole.SENDER)]


def plan_link(settings: Settings, draft_id: int) -> str:
    """The release's sending page in the console (the plan and the approval box)."""
    return f"{console_address(settings)}/admin/releases/{draft_id}/send"


def compose(
    settings: Settings, to: StaffUser, draft: ReleaseDraft, asker: StaffUser
) -> OutgoingNotice:
    """The email telling a sender that a release waits for approval, in their language."""
    lang = to.language if to.language in translations.LANGUAGES else "en"

    def t(message: str, **values: str) -> str:
        return translations.gettext(lang, message, **values)

    org = str(settings.organisation_name)
    who = asker.name or asker.email
    subject = t("Approval asked for: %(release)s", release=draft.slug)
    lines = [
        t("Hello,"),
        t(
            "%(who)s asks you to approve the release %(release)s (version %(version)s) on "
            "the press console of %(org)s. Read its plan, then approve or reject it:",
            who=who,
            release=draft.slug,
            version=str(draft.current_version),
            org=org,
        ),
    ]
    link = plan_link(settings, draft.id)
    closing = t("Any sender other than its author may decide; the first decision counts.")
    text = "\n\n".join([*lines, link, closing]) + "\n"
    html = (
        "<!doctype html><html><body>"
        + "".join(f"<p>{escape(line)}</p>" for line in lines)
        + f'<p><a href="{escape(link)}">{escape(link)}</a></p>'
        + f"<p>{escape(closing)}</p></body></html>"
    )
    return OutgoingNotice(to=to.email, subject=subject, text=text, html=html, language=lang)

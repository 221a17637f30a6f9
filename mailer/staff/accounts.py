"""Staff accounts: invite, accept, sign in (throttled), reset, change role, disable, 2FA policy.

Every change is written to the event log with the acting user (`actor`: "user:EMAIL", or
"cli" for `mailer users`), in the caller's transaction, so the console's audit page and the
log agree with the data.

Sign-in is throttled twice, both counted in the shared `rate_limit` table so they hold across
`mailer serve` processes: per account (`ACCOUNT_LIMIT` tries in its window; a typed address
that has no account is counted the same, so the answer never says which addresses exist) and
per client address (`ADDRESS_LIMIT`). Every try is counted before the password is checked,
so parallel guesses cannot slip past the limit. The right password forgets the account's tries
when no second factor is owed; else the right code does (a wrong code counts as a try).
Reset emails are limited per account too (`RESET_LIMIT`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.errors import InvalidInputError, NotFoundError
from mailer.staff import passwords, sessions, tokens, twofactor
from mailer.staff.roles import parse as parse_role
from mailer.store import audit, ratelimit
from mailer.store.models import StaffPolicy, StaffRole, StaffUser
from mailer.store.ratelimit import Limit

ACCOUNT_LIMIT = Limit(5, 900)
ADDRESS_LIMIT = Limit(30, 900)
RESET_LIMIT = Limit(3, 3600)  # reset emails per account
LANGUAGES = ("en", "ko")


@dataclass(frozen=True)
class SignIn:
    """What a sign-in attempt came to: a user, or why not (and until when)."""

    user: StaffUser | None
    refused: str = ""  # "" | "wrong" | "locked" | "address" | "disabled"
    retry_at: datetime | None = None


def normalise_email(value: str) -> str:
    """The sign-in name: trimmed and lower-cased, and it must look like an address."""
    email = value.strip().lower()
    if (
        not email
        or len(email) > 320
        or email.count("@") != 1
        or any(ch.isspace() or ord(ch) < 32 for ch in email)
        or not all(email.split("@"))
    ):
        raise InvalidInputError(f"expected an email address, got {value!r}")
    return email


def find(session: Session, email: str) -> StaffUser | None:
    try:
        key = normalise_email(email)
    except InvalidInputError:
        return None
    return session.scalars(select(StaffUser).where(StaffUser.email == key)).first()


def get(session: Session, email: str) -> StaffUser:
    user = find(session, email)
    if user is None:
        raise NotFoundError(f"no staff account {email!r} (mailer users ls lists them)")
    return user


def all_users(session: Session) -> list[StaffUser]:
    return list(session.scalars(select(StaffUser).order_by(StaffUser.email)))


def add(
    session: Session,
    email: str,
    role: StaffRole | str,
    *,
    name: str = "",
    language: str = "en",
    actor: str = "cli",
) -> tuple[StaffUser, str]:
    """A new account without a password, and the token of its invitation link."""
    key = normalise_email(email)
    role = role if isinstance(role, StaffRole) else parse_role(role)
    if language not in LANGUAGES:
        raise InvalidInputError(
            f"language: expected one of {', '.join(LANGUAGES)}, got {language!r}"
        )
    if find(session, key) is not None:
        raise InvalidInputError(f"{key} already has a staff account")
    user = StaffUser(email=key, name=_clean_name(name), role=role, language=language)
    session.add(user)
    session.flush()
    token = tokens.issue(session, user, tokens.INVITE)
    audit.record(session, "staff_invited", actor=actor, user=key, role=role.value)
    return user, token


def reinvite(session: Session, user: StaffUser, *, actor: str = "cli") -> str:
    """A new invitation link for a user who has not set a password yet."""
    if user.password_hash:
        raise InvalidInputError(
            f"{user.email} has already set a password: use a password reset instead"
        )
    token = tokens.issue(session, user, tokens.INVITE)
    audit.record(session, "staff_reinvited", actor=actor, user=user.email)
    return token


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if len(cleaned) > 200:
        raise InvalidInputError("name: at most 200 characters")
    return cleaned


def set_password(session: Session, user: StaffUser, password: str) -> None:
    """Set a new password and end every session of the user (a reset ends a stolen session)."""
    passwords.check_strength(password, email=user.email)
    user.password_hash = passwords.hash_password(password)
    sessions.end_all(session, user)


def accept_invitation(session: Session, token: str, password: str, *, name: str = "") -> StaffUser:
    user = tokens.peek(session, token, tokens.INVITE)
    if user is None or user.disabled:
        raise InvalidInputError(
            "this invitation link is not valid any more: ask an admin for a new one"
        )
    passwords.check_strength(password, email=user.email)
    if tokens.redeem(session, token, tokens.INVITE) is None:
        # Spent by a request running at the same time (redeem locks the row and looks again).
        raise InvalidInputError(
            "this invitation link is not valid any more: ask an admin for a new one"
        )
    if name.strip():
        user.name = _clean_name(name)
    set_password(session, user, password)
    audit.record(session, "staff_joined", actor=f"user:{user.email}", user=user.email)
    return user


def request_reset(session: Session, email: str) -> tuple[StaffUser, str] | None:
    """A reset link token for an enabled account with a password; None for anything else."""
    user = find(session, email)
    if user is None or user.disabled or not user.password_hash:
        return None
    # A few an hour: more would let anyone fill the person's inbox (and void each link
    # before it is used: a new one replaces the last).
    if not ratelimit.hit(session, "reset-" + _account_key(user.email), RESET_LIMIT).allowed:
        return None
    token = tokens.issue(session, user, tokens.RESET)
    audit.record(session, "staff_reset_requested", actor=f"user:{user.email}", user=user.email)
    return user, token


def reset_password(session: Session, token: str, password: str) -> StaffUser:
    user = tokens.peek(session, token, tokens.RESET)
    if user is None or user.disabled:
        raise InvalidInputError("this reset link is not valid any more: ask for a new one")
    passwords.check_strength(password, email=user.email)
    if tokens.redeem(session, token, tokens.RESET) is None:
        raise InvalidInputError("this reset link is not valid any more: ask for a new one")
    set_password(session, user, password)
    ratelimit.clear(session, _account_key(user.email))
    audit.record(session, "staff_password_reset", actor=f"user:{user.email}", user=user.email)
    return user


def change_password(
    session: Session, user: StaffUser, current: str, new: str, *, keep: str
) -> None:
    """The user's own change: needs the current password; ends every other session."""
    if not passwords.verify(user.password_hash, current):
        raise InvalidInputError("the current password is not right")
    passwords.check_strength(new, email=user.email)
    user.password_hash = passwords.hash_password(new)
    sessions.end_all(session, user, keep=keep)
    audit.record(session, "staff_password_changed", actor=f"user:{user.email}", user=user.email)


def _account_key(email: str) -> str:
    # Hashed: the table of counters need not list the addresses people typed.
    return "login-account:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def sign_in(session: Session, email: str, password: str, *, ip: str) -> SignIn:
    """Check a sign-in; counts the try first (see the module's docstring)."""
    now = clock.now()
    by_address = ratelimit.hit(session, f"login-ip:{ip}", ADDRESS_LIMIT)
    if not by_address.allowed:
        return SignIn(None, "address", now + timedelta(seconds=by_address.retry_after))
    by_account = ratelimit.hit(session, _account_key(email), ACCOUNT_LIMIT)
    if not by_account.allowed:
        return SignIn(None, "locked", now + timedelta(seconds=by_account.retry_after))
    user = find(session, email)
    # Verified whether or not the account exists: an unknown address costs the same hashing
    # time as a wrong password (passwords.verify hashes against a dummy for None).
    right = passwords.verify(user.password_hash if user else None, password)
    if user is None or not right:
        if user is not None:
            audit.record(session, "staff_sign_in_failed", actor=f"user:{user.email}", ip=ip)
        return SignIn(None, "wrong")
    if user.disabled:
        return SignIn(None, "disabled")
    if not user.totp_enabled:
        # With a code still owed the tries stay counted (second_factor forgets them): else
        # signing in again after every 4 wrong codes would give unlimited guesses.
        ratelimit.clear(session, _account_key(email))
    if user.password_hash and passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.last_login_at = now
    # With two-factor sign-in on, the user is signed in only once the code is right.
    kind = "staff_password_accepted" if user.totp_enabled else "staff_signed_in"
    audit.record(session, kind, actor=f"user:{user.email}", ip=ip)
    return SignIn(user)


def unlock(session: Session, user: StaffUser, *, actor: str = "cli") -> None:
    ratelimit.clear(session, _account_key(user.email))
    audit.record(session, "staff_unlocked", actor=actor, user=user.email)


def stage_after_password(session: Session, user: StaffUser) -> str:
    """The session stage a right password leads to (see mailer.staff.sessions)."""
    if user.totp_enabled:
        return sessions.PASSWORD
    if requires_2fa(session, user.role):
        return sessions.SETUP
    return sessions.FULL


def requires_2fa(session: Session, role: StaffRole) -> bool:
    policy = session.get(StaffPolicy, role)
    return bool(policy and policy.require_2fa)


def set_require_2fa(session: Session, role: StaffRole, required: bool, *, actor: str) -> None:
    policy = session.get(StaffPolicy, role)
    if policy is None:
        policy = StaffPolicy(role=role, require_2fa=required)
        session.add(policy)
    policy.require_2fa = required
    audit.record(session, "staff_2fa_policy", actor=actor, role=role.value, required=required)


def set_role(session: Session, user: StaffUser, role: StaffRole | str, *, actor: str) -> None:
    """Change a user's role; their sessions end, so the new role applies at once."""
    role = role if isinstance(role, StaffRole) else parse_role(role)
    if user.role == role:
        return
    if user.role == StaffRole.ADMIN and role != StaffRole.ADMIN:
        _keep_one_admin(session, user)
    old = user.role
    user.role = role
    sessions.end_all(session, user)
    audit.record(session, "staff_role", actor=actor, user=user.email, old=old.value, new=role.value)


def set_disabled(session: Session, user: StaffUser, disabled: bool, *, actor: str) -> None:
    if disabled and user.role == StaffRole.ADMIN and not user.disabled:
        _keep_one_admin(session, user)
    user.disabled = disabled
    if disabled:
        sessions.end_all(session, user)
    audit.record(
        session, "staff_disabled" if disabled else "staff_enabled", actor=actor, user=user.email
    )


def _keep_one_admin(session: Session, leaving: StaffUser) -> None:
    others = session.scalars(
        select(StaffUser.id).where(
            StaffUser.role == StaffRole.ADMIN,
            StaffUser.disabled.is_(False),
            StaffUser.id != leaving.id,
        )
    ).first()
    if others is None:
        raise InvalidInputError(
            f"{leaving.email} is the only enabled admin: make someone else admin first"
        )


def set_language(session: Session, user: StaffUser, language: str) -> None:
    if language not in LANGUAGES:
        raise InvalidInputError(
            f"language: expected one of {', '.join(LANGUAGES)}, got {language!r}"
        )
    user.language = language


def begin_2fa(user: StaffUser) -> str:
    """A new secret to show as a QR code; two-factor login is on only after `confirm_2fa`."""
    user.totp_secret = twofactor.new_secret()
    user.totp_enabled = False
    return user.totp_secret


def confirm_2fa(session: Session, user: StaffUser, code: str) -> list[str]:
    """Turn two-factor login on once a code from the app is right; returns recovery codes."""
    if not user.totp_secret or not twofactor.check_code(user, code):
        raise InvalidInputError("that code is not right: type the 6 digits the app shows now")
    user.totp_enabled = True
    shown, kept = twofactor.new_recovery_codes()
    user.recovery_codes = kept
    audit.record(session, "staff_2fa_enabled", actor=f"user:{user.email}", user=user.email)
    return shown


def second_factor(session: Session, user: StaffUser, code: str) -> bool:
    """A TOTP code or, failing that, a recovery code; counted against the account's tries."""
    if twofactor.check_code(user, code):
        method = "totp"
    elif twofactor.use_recovery_code(user, code):
        method = "recovery code"
    else:
        method = ""
    if method:
        ratelimit.clear(session, _account_key(user.email))
        audit.record(session, "staff_signed_in", actor=f"user:{user.email}", second_factor=method)
        return True
    audit.record(session, "staff_2fa_failed", actor=f"user:{user.email}", user=user.email)
    return False


def second_factor_allowed(session: Session, user: StaffUser) -> SignIn:
    """Count a second-factor try against the same per-account limit as passwords."""
    hit = ratelimit.hit(session, _account_key(user.email), ACCOUNT_LIMIT)
    if not hit.allowed:
        return SignIn(None, "locked", clock.now() + timedelta(seconds=hit.retry_after))
    return SignIn(user)


def reset_2fa(session: Session, user: StaffUser, *, actor: str) -> None:
    """Turn two-factor login off (the user lost the phone); they set it up again next time."""
    user.totp_secret = None
    user.totp_enabled = False
    user.recovery_codes = []
    user.totp_last_step = 0
    sessions.end_all(session, user)
    audit.record(session, "staff_2fa_reset", actor=actor, user=user.email)

"""argon2id password hashes (argon2-cffi, RFC 9106's second recommended parameters).

The hasher's defaults in argon2-cffi 23+ are RFC 9106's "low memory" choice (t=3, m=64 MiB,
p=4): about a quarter of a second a hash on a small server, so guessing is expensive and a
sign-in still feels quick. `needs_rehash` lets later parameters upgrade a hash at its next
sign-in.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailer.errors import InvalidInputError

_HASHER = PasswordHasher()
MIN_LENGTH = 12
MAX_LENGTH = 256

# Verified against when the account does not exist, so that an unknown address costs as much
# time as a wrong password and the answer's timing does not say which addresses have accounts.
_DUMMY = _HASHER.hash("not a password of anyone's, only here to spend the same time")


def check_strength(password: str, *, email: str = "") -> None:
    """Refuse passwords too short, too long, or made of the account's own address."""
    if len(password) < MIN_LENGTH:
        raise InvalidInputError(f"the password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInputError(f"the password may have at most {MAX_LENGTH} characters")
    lowered = password.lower()
    local = email.split("@", 1)[0].lower()
    if email and (lowered == email.lower() or (len(local) >= 4 and local in lowered)):
        raise InvalidInputError("the password must not contain the account's address")
    if len(set(password)) < 4:
        raise InvalidInputError("the password uses too few different characters: choose another")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored`; None (no password yet) never matches."""
    if not stored:
        try:
            _HASHER.verify(_DUMMY, password)
        except VerificationError:
            pass
        return False
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True

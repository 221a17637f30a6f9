"""The four console roles and what each may do: each role may do everything the ones below it may.

viewer: read reports and pages. editor: contacts, segments, releases, test sends.
sender: send and schedule, approve. admin: users, lists, settings, suppressions, imports.
"""

from __future__ import annotations

from mailer.errors import InvalidInputError
from mailer.store.models import StaffRole

ORDER: tuple[StaffRole, ...] = (
    StaffRole.VIEWER,
    StaffRole.EDITOR,
    StaffRole.SENDER,
    StaffRole.ADMIN,
)


def rank(role: StaffRole) -> int:
    return ORDER.index(role)


def allows(held: StaffRole, needed: StaffRole) -> bool:
    """True when a user with role `held` may do what needs `needed`."""
    return rank(held) >= rank(needed)


def parse(value: str) -> StaffRole:
    """A role from its name, or an error listing the four."""
    try:
        return StaffRole(value.strip().lower())
    except ValueError:
        names = ", ".join(r.value for r in ORDER)
        raise InvalidInputError(f"unknown role {value!r}: expected one of {names}") from None

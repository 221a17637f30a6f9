"""Who may open which console page: one table, endpoint -> the least it needs.

Every console route is listed here. A request to an endpoint that is missing is refused (fail
closed), and tests/test_console_access.py walks the app's URL map for every role and for no
session, so a new route without a line here fails the suite.

PUBLIC: anyone (sign-in, invitation, reset, static files). PENDING: a browser whose password
was right and that owes a second factor. SETUP: a signed-in user whose role requires two-factor
login they have not set up yet (they may set it up and sign out, nothing else). A role: a fully
signed-in user with that role or a higher one (mailer.staff.roles).
"""

from __future__ import annotations

from typing import Literal

from mailer.store.models import StaffRole

PUBLIC: Literal["public"] = "public"
PENDING: Literal["pending"] = "pending"
SETUP: Literal["setup"] = "setup"

Need = StaffRole | Literal["public", "pending", "setup"]

V, E, S, A = StaffRole.VIEWER, StaffRole.EDITOR, StaffRole.SENDER, StaffRole.ADMIN

TABLE: dict[str, Need] = {
    # Foundation: static files, sign-in, account (mailer/web/console/auth.py, account.py)
    "console.static": PUBLIC,
    "console.login": PUBLIC,
    "console.login_post": PUBLIC,
    "console.second_factor": PENDING,
    "console.second_factor_post": PENDING,
    "console.logout": PENDING,
    "console.invitation": PUBLIC,
    "console.invitation_post": PUBLIC,
    "console.reset_request": PUBLIC,
    "console.reset_request_post": PUBLIC,
    "console.reset": PUBLIC,
    "console.reset_post": PUBLIC,
    "console.account": SETUP,
    "console.account_language": SETUP,
    "console.account_password": V,
    "console.account_sign_out_everywhere": V,
    "console.twofactor_setup": SETUP,
    "console.twofactor_setup_post": SETUP,
    "console.twofactor_disable": V,
    # Users and the audit log (users.py, audit_log.py)
    "console.users": A,
    "console.users_invite": A,
    "console.user_role": A,
    "console.user_disable": A,
    "console.user_enable": A,
    "console.user_reset_2fa": A,
    "console.user_reinvite": A,
    "console.user_unlock": A,
    "console.users_policy": A,
    "console.audit": A,
    # Dashboard (dashboard.py)
    "console.dashboard": V,
    # Lists (lists.py)
    "console.lists": V,
    "console.lists_create": A,
    "console.list_show": V,
    "console.list_edit": A,
    "console.list_edit_post": A,
    # Contacts (contacts.py). Erasing deletes a person's history for good: admins only.
    "console.contacts": E,
    "console.contact": E,
    "console.contact_edit": E,
    "console.contact_edit_post": E,
    "console.contact_tag": E,
    "console.contact_untag_confirm": E,
    "console.contact_untag": E,
    "console.contact_unsubscribe_confirm": E,
    "console.contact_unsubscribe": E,
    "console.contact_suppress_confirm": E,
    "console.contact_suppress": E,
    "console.contact_erase_confirm": A,
    "console.contact_erase": A,
    # Import and export (imports.py)
    "console.imports": A,
    "console.imports_upload": A,
    "console.imports_show": A,
    "console.imports_check": A,
    "console.imports_progress": A,
    "console.imports_apply": A,
    "console.imports_rejected": A,
    "console.imports_discard": A,
    "console.export": A,
    "console.export_download": A,
    # Suppressions (suppressions.py)
    "console.suppressions": A,
    "console.suppressions_add": A,
    "console.suppression_remove_confirm": A,
    "console.suppression_remove": A,
    # Segments (segments.py)
    # Editors own segments (issue 14's roles); viewers read reports only, and a segment's
    # preview shows contacts.
    "console.segments": E,
    "console.segment_new": E,
    "console.segment_create": E,
    "console.segment_preview": E,
    "console.segment_edit": E,
    "console.segment_update": E,
    "console.segment_delete_confirm": E,
    "console.segment_delete": E,
    # Campaigns: progress and reports (campaigns.py); bounces across campaigns
    # (campaign_bounces.py). Viewers read figures; the CSV and the bounce pages name every
    # recipient: editors, as contacts. Controls change a send: senders.
    "console.campaigns": V,
    "console.campaign": V,
    "console.campaign_progress": V,
    "console.campaign_stream": V,
    "console.campaign_report": V,
    "console.campaign_report_csv": E,
    "console.campaign_pause": S,
    "console.campaign_resume": S,
    "console.campaign_cancel_confirm": S,
    "console.campaign_cancel": S,
    "console.campaign_resolve_confirm": S,
    "console.campaign_resolve": S,
    "console.bounces": E,
    "console.bounce_show": E,
    # Sending a release (sending.py): editors test it and ask for approval; senders approve
    # (never their own) and send or schedule. Viewers see none of it (the plan names lists).
    "console.approvals": E,
    "console.send_plan": E,
    "console.send_test_page": E,
    "console.send_test": E,
    "console.approval_request": E,
    "console.approval_decide": S,
    "console.send_when": S,
    "console.send_start": S,
    # Releases (releases.py): viewers read drafts, versions and previews; editors write.
    "console.releases": V,
    "console.release_new": E,
    "console.release_create": E,
    "console.release_edit": V,
    "console.release_save": E,
    "console.release_preview": V,
    "console.release_preview_frame": V,
    "console.release_upload": E,
    "console.release_file_remove": E,
    "console.release_versions": V,
    "console.release_diff": V,
}

# Endpoints that take an uploaded file: their bodies may be up to `console_max_upload_bytes`;
# every other request keeps `web_max_body_bytes`.
UPLOADS: frozenset[str] = frozenset(
    # The release editor's save and preview carry every language's whole text (a 2,000-word
    # release in English and Korean is over 32 KB).
    {
        "console.imports_upload",
        "console.release_upload",
        "console.release_save",
        "console.release_preview",
    }
)

"""The words of the subscriber pages and the confirmation email, in English and Korean.

Strings are trusted markup templates: `translate` escapes every value put into them, so a list
name or an address can never inject HTML. Korean avoids particles that depend on the final
consonant of a value (을/를, 이/가) by quoting values or rephrasing.
"""

from __future__ import annotations

from collections.abc import Iterable

from markupsafe import Markup, escape

from mailer.releases import languages

FALLBACK = "en"

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "language_name": "English",
        "skip": "Skip to the form",
        # subscribe form
        "subscribe_title": "Subscribe",
        "subscribe_heading": "Get our news by email",
        "subscribe_intro": "News, events and press releases from {org}, straight to your inbox.",
        "email_label": "Email address",
        "email_placeholder": "you@example.com",
        "name_label": "Name",
        "optional": "optional",
        "language_label": "Language of our emails",
        "lists_label": "What would you like to receive?",
        "consent_text": "I agree to receive the emails chosen above from {org}. I can "
        "unsubscribe at any time with the link at the bottom of every email.",
        "subscribe_button": "Subscribe",
        "double_optin_note": "We will email you a link to confirm your address. You are not "
        "subscribed until you click it.",
        "honeypot_label": "Leave this field empty",
        "error_email": "Please enter a valid email address.",
        "error_lists": "Please choose at least one list.",
        "no_lists": "There is nothing to subscribe to at the moment.",
        # after subscribing
        "check_title": "Check your inbox",
        "check_body": "Thank you! Please look in the inbox of {email} for a message from "
        "{sender} and click the button in it to confirm your subscription.",
        "check_expiry": "The link in it is valid for {days} days.",
        "check_spam": "Nothing there after a few minutes? Look in your spam folder. We send at "
        "most one confirmation email a day to the same address.",
        # confirm
        "confirm_title": "Confirm your subscription",
        "confirm_body": "Confirm that {email} wants to receive:",
        "confirm_button": "Yes, subscribe me",
        "confirmed_title": "You are subscribed",
        "confirmed_body": "Thank you. {email} will receive:",
        "cannot_subscribe_title": "We cannot add this address",
        "cannot_subscribe_body": "Our records say {email} must not receive our emails. If "
        "this is a mistake, please write to {contact}.",
        "expired_title": "This link has expired",
        "expired_body": "Confirmation links are valid for {days} days. We can send you a new one.",
        "resend_button": "Send me a new link",
        "resent_title": "A new link is on its way",
        # unsubscribe
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_list_question": "Stop sending “{list}” to {email}?",
        "unsubscribe_all_question": "Stop all emails from {org} to {email}?",
        "unsubscribe_all_choice": "Unsubscribe from all lists of {org}",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed_list": "{email} will no longer receive “{list}”.",
        "unsubscribed_all": "{email} will no longer receive any email from {org}.",
        "unsubscribed_gone": "This address is no longer on any of our lists.",
        "unsubscribe_mistake": "Unsubscribed by mistake? You can subscribe again at any time.",
        "manage_link": "Manage your subscriptions",
        # preferences
        "preferences_title": "Your email preferences",
        "preferences_for": "Settings for {email}",
        "preferences_lists": "Lists",
        "pending_note": "waiting for your confirmation",
        "save_button": "Save my preferences",
        "saved": "Your preferences have been saved.",
        "suppressed_all": "You unsubscribed from all our emails. Tick a list to subscribe again.",
        "blocked": "This address cannot receive our emails. If this is a mistake, please write "
        "to {contact}.",
        "unsubscribe_everything": "Unsubscribe from everything",
        "form_expired": "This form has expired. Please reload the page and try again.",
        # errors
        "not_found_title": "Page not found",
        "not_found_body": "This link is not valid. If you copied it from an email, please make "
        "sure you copied all of it.",
        "rate_title": "Too many attempts",
        "rate_body": "Please wait a little and try again later.",
        "error_title": "Something went wrong",
        "error_body": "We could not complete your request. Please try again later.",
        "bad_request_title": "The form could not be read",
        "bad_request_body": "Please go back, reload the page and try again.",
        "back_home": "Back to {org}",
        # confirmation email
        "mail_subject": "Please confirm your subscription to {org}",
        "mail_greeting": "Hello {name},",
        "mail_greeting_anonymous": "Hello,",
        "mail_intro": "Someone, probably you, asked to receive these emails from {org} at this "
        "address:",
        "mail_action": "Confirm my subscription",
        "mail_expiry": "The link is valid for {days} days.",
        "mail_ignore": "If this was not you, just ignore this email: you will not be subscribed "
        "and we will not write again.",
        "mail_why": "You received this email because this address was entered on the "
        "subscription form of {org}.",
    },
    "ko": {
        "language_name": "한국어",
        "skip": "양식으로 건너뛰기",
        "subscribe_title": "구독 신청",
        "subscribe_heading": "이메일로 소식 받기",
        "subscribe_intro": "{org}의 소식, 행사 안내, 보도자료를 이메일로 받아 보세요.",
        "email_label": "이메일 주소",
        "email_placeholder": "you@example.com",
        "name_label": "이름",
        "optional": "선택",
        "language_label": "받아 볼 언어",
        "lists_label": "어떤 소식을 받으시겠어요?",
        "consent_text": "위에서 고른 {org}의 이메일을 받는 데 동의합니다. 모든 이메일 하단의 "
        "링크로 언제든지 구독을 해지할 수 있습니다.",
        "subscribe_button": "구독하기",
        "double_optin_note": "주소 확인을 위한 링크를 이메일로 보내 드립니다. 링크를 누르셔야 "
        "구독이 완료됩니다.",
        "honeypot_label": "이 칸은 비워 두세요",
        "error_email": "올바른 이메일 주소를 입력해 주세요.",
        "error_lists": "받을 소식을 하나 이상 골라 주세요.",
        "no_lists": "지금은 구독할 수 있는 소식이 없습니다.",
        "check_title": "메일함을 확인해 주세요",
        "check_body": "감사합니다! {email} 메일함에서 {sender}의 메일을 찾아, 그 안의 버튼을 눌러 "
        "구독을 확인해 주세요.",
        "check_expiry": "메일 안의 링크는 {days}일 동안 유효합니다.",
        "check_spam": "몇 분이 지나도 메일이 없다면 스팸 메일함을 확인해 주세요. 같은 주소로는 "
        "확인 메일을 하루에 한 번만 보냅니다.",
        "confirm_title": "구독 확인",
        "confirm_body": "{email} 주소로 다음 소식을 받으시겠습니까?",
        "confirm_button": "네, 구독하겠습니다",
        "confirmed_title": "구독이 완료되었습니다",
        "confirmed_body": "감사합니다. {email} 주소로 다음 소식을 보내 드립니다.",
        "cannot_subscribe_title": "이 주소는 추가할 수 없습니다",
        "cannot_subscribe_body": "기록에 따르면 {email} 주소로는 이메일을 보낼 수 없습니다. "
        "착오라면 {contact}(으)로 연락해 주세요.",
        "expired_title": "링크의 유효 기간이 지났습니다",
        "expired_body": "확인 링크는 {days}일 동안만 유효합니다. 새 링크를 보내 드릴 수 있습니다.",
        "resend_button": "새 링크 보내기",
        "resent_title": "새 링크를 보냈습니다",
        "unsubscribe_title": "구독 해지",
        "unsubscribe_list_question": "{email} 주소로 「{list}」 받기를 그만하시겠습니까?",
        "unsubscribe_all_question": "{email} 주소로 {org}의 모든 이메일 받기를 그만하시겠습니까?",
        "unsubscribe_all_choice": "{org}의 모든 소식 구독 해지",
        "unsubscribe_button": "구독 해지",
        "unsubscribed_title": "구독이 해지되었습니다",
        "unsubscribed_list": "이제 {email} 주소로 「{list}」 이메일을 보내지 않습니다.",
        "unsubscribed_all": "이제 {email} 주소로 {org}의 어떤 이메일도 보내지 않습니다.",
        "unsubscribed_gone": "이 주소는 더 이상 어떤 목록에도 없습니다.",
        "unsubscribe_mistake": "실수로 해지하셨나요? 언제든지 다시 구독할 수 있습니다.",
        "manage_link": "구독 설정 관리",
        "preferences_title": "이메일 구독 설정",
        "preferences_for": "{email} 주소의 구독 설정",
        "preferences_lists": "받을 소식",
        "pending_note": "확인 대기 중",
        "save_button": "설정 저장",
        "saved": "설정이 저장되었습니다.",
        "suppressed_all": "모든 이메일 구독을 해지하셨습니다. 다시 받으시려면 목록을 선택해 "
        "주세요.",
        "blocked": "이 주소로는 이메일을 보낼 수 없습니다. 착오라면 {contact}(으)로 연락해 주세요.",
        "unsubscribe_everything": "모든 구독 해지",
        "form_expired": "양식의 유효 시간이 지났습니다. 페이지를 새로 고친 뒤 다시 시도해 주세요.",
        "not_found_title": "페이지를 찾을 수 없습니다",
        "not_found_body": "올바르지 않은 링크입니다. 이메일에서 복사하셨다면 링크 전체를 "
        "복사했는지 확인해 주세요.",
        "rate_title": "요청이 너무 많습니다",
        "rate_body": "잠시 기다리신 뒤 다시 시도해 주세요.",
        "error_title": "문제가 발생했습니다",
        "error_body": "요청을 처리하지 못했습니다. 잠시 후 다시 시도해 주세요.",
        "bad_request_title": "양식을 읽을 수 없습니다",
        "bad_request_body": "이전 페이지로 돌아가 새로 고친 뒤 다시 시도해 주세요.",
        "back_home": "{org} 홈페이지로",
        "mail_subject": "{org} 구독을 확인해 주세요",
        "mail_greeting": "{name}님, 안녕하세요.",
        "mail_greeting_anonymous": "안녕하세요.",
        "mail_intro": "누군가(아마도 본인)가 이 주소로 {org}의 다음 이메일을 받겠다고 "
        "신청했습니다.",
        "mail_action": "구독 확인하기",
        "mail_expiry": "링크는 {days}일 동안 유효합니다.",
        "mail_ignore": "본인이 신청하지 않았다면 이 메일을 무시하세요. 구독되지 않으며 다시 "
        "연락드리지 않습니다.",
        "mail_why": "이 주소가 {org}의 구독 신청 양식에 입력되어 이 메일을 보내 드렸습니다.",
    },
}

LANGUAGES = tuple(STRINGS)


def translate(language: str, key: str, **values: object) -> Markup:
    """The string `key` in `language` (English when missing) with `values` escaped into it."""
    table = STRINGS.get(language, STRINGS[FALLBACK])
    template = table.get(key)
    if template is None:
        template = STRINGS[FALLBACK][key]
    return Markup(template).format(**{k: escape(v) for k, v in values.items()})


def plain(language: str, key: str, **values: object) -> str:
    """The string as plain text (for email subjects and text parts): nothing escaped."""
    table = STRINGS.get(language, STRINGS[FALLBACK])
    template = table.get(key) or STRINGS[FALLBACK][key]
    return template.format(**values)


def supported(configured: Iterable[str]) -> list[str]:
    """The configured languages the pages have words for, in the configured order."""
    out = [lang for lang in configured if lang in STRINGS]
    return out or [FALLBACK]


def primary(tag: str | None) -> str | None:
    """The primary subtag of a language tag: ko-KR -> ko, kr -> ko (the one language rule:
    mailer.releases.languages)."""
    return languages.primary(tag) or None


def pick(
    available: list[str],
    *,
    explicit: str | None = None,
    contact: str | None = None,
    accept: Iterable[str] = (),
    default: str = FALLBACK,
) -> str:
    """Choose the page language: ?lang= first, then the contact's, then Accept-Language; each
    by the rule that chooses a release's variant (languages.choose), so a contact written 'kr'
    or 'ko-KR' reads the Korean pages as they read the Korean release."""
    for candidate in (explicit, contact, *accept):
        chosen = languages.choose(candidate, available, "") if candidate else ""
        if chosen:
            return chosen
    return languages.choose(default, available, "") or available[0]

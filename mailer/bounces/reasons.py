"""What one recipient's failure means: the one function that decides a bounce's kind.

`judge` reads what a report says about one recipient (the DSN Action, the enhanced status code,
the server's own words) and returns the kind, the code and the evidence. Every caller (parse.py
for DSNs and non-standard bounces, `bounces classify`, `bounces process` through policy.py) goes
through it, so what `classify` shows is exactly what `process` acts on.

The order of the rules is the policy, precision first:
1. an Action that is not a failure (delayed, delivered, relayed, expanded) never suppresses;
2. words about the sender, the content or the connection (spam, blocklists, SPF, DMARC, rate
   limits, relaying, TLS, ...) make a block, whatever the code: servers often say 5.1.1 or
   "user unknown" when they mean "we do not take mail from you";
3. words about the mailbox's state (full, disabled, suspended, inactive) make a soft bounce:
   the address exists and may come back;
4. a temporary (4xx) failure is soft;
5. words that say the domain does not exist, in a permanent failure, make a hard bounce; so do
   the codes that say the address is bad (5.1.1, 5.1.2, 5.1.6, 5.1.10, 5.4.4). Words that say
   the user does not exist ("550 User unknown") make a hard bounce only where something ties
   them to the address: an x.1.x code about it, a refusal at RCPT TO, or the receiving
   system's own directory verdict. After DATA, or with nothing of the kind, they are a
   recipient's filter speaking as often as a missing mailbox (Japanese carriers' domain
   filters, filtering gateways): soft, the address is kept;
6. other x.7.x and 5.1.7/5.1.8 (our sender address) are blocks; anything else is soft.
The phrase tables are the ones mail systems are known to use (Postfix, Exim, Sendmail, qmail,
Exchange, Office 365, Gmail, Yahoo, Notes, Japanese and Korean carriers...), never one file's.

Over 400 lines on purpose: the word lists and the one `judge` that reads them are the
classifier's policy, kept in one place so its order of rules reads top to bottom.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

HARD = "hard"  # the address does not exist (5.1.x): suppress at once
SOFT = "soft"  # mailbox full, temporary failure given up on, unexplained failure
BLOCK = "block"  # policy or spam refusal (x.7.x, content): about us, not the address
DELAYED = "delayed"  # still being retried: never a bounce
COMPLAINT = "complaint"  # the recipient marked the message as spam (ARF)
UNSUBSCRIBE = "unsubscribe"
AUTOREPLY = "autoreply"
IGNORED = "ignored"  # a report that needs no action (delivered, relayed, not-spam, ...)

# The kinds whose report alone calls for suppressing the address.
SUPPRESSING = frozenset({HARD, COMPLAINT})


def suppresses(kind: str) -> bool:
    """Whether a report of this kind, by itself, calls for suppressing the address."""
    return kind in SUPPRESSING


ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"(?<![\d.#])([245]\d\d)(?:[ :-]|$)", re.M)


class _Phrases:
    """An alternation of phrases, searched in lower-cased text (a case-insensitive
    alternation is about three times slower).

    `search` gives exactly the pattern's answer, but first looks for each phrase's required
    literal (the longest run of plain characters every match of the phrase contains) with
    `in`: the regex tries every phrase at every position of the text, and most texts contain
    none of the phrases (a tenth of the time of reading a bounce went there)."""

    def __init__(self, phrases: tuple[str, ...]) -> None:
        self.pattern = re.compile("|".join(phrases))
        literals = [_required_literal(p) for p in phrases]
        # One phrase without such a literal: the regex alone decides.
        self.literals = (
            None if not all(literals) else tuple(dict.fromkeys(lit for lit in literals if lit))
        )

    def search(self, text: str) -> re.Match[str] | None:
        if self.literals is not None and not any(lit in text for lit in self.literals):
            return None
        return self.pattern.search(text)


try:
    _SRE_PARSER: Any = importlib.import_module("re._parser")
except ImportError:  # another Python's internals: search with the regex alone
    _SRE_PARSER = None


def _required_literal(phrase: str) -> str | None:
    """The longest run of characters in every match of `phrase` (its top-level literals, with
    nothing between them); None when unsure."""
    if _SRE_PARSER is None:
        return None
    try:
        items = list(_SRE_PARSER.parse(phrase, 0))
        literal = _SRE_PARSER.LITERAL
    except Exception:  # unknown internals: no shortcut, never a wrong answer
        return None
    best, run = "", ""
    for op, arg in items:
        if op is literal:
            run += chr(arg)
        else:
            run = ""
        best = max(best, run, key=len)
    return best or None


def _words(*phrases: str) -> _Phrases:
    return _Phrases(phrases)


# Refusals about us: the sending host, the sender's domain or address, the content, the volume.
BLOCK_WORDS = _words(
    r"spam",
    r"\bblock(ed|ing|list(ed)?)?\b",
    r"black\s?list",
    r"(?<!not )\blisted (at|on|by|in)\b",
    r"\brbl\b",
    r"\bdnsbl\b",
    r"spamhaus",
    r"spamcop",
    r"barracuda",
    r"sorbs",
    r"reputation",
    r"\bpolicy\b",
    r"policies",
    r"\bspf\b",
    r"\bdkim\b",
    r"\bdmarc\b",
    r"sender.?id",
    r"unauthenticated",
    r"not authenticated",
    r"authentication (required|failed)",
    r"reverse (dns|lookup)",
    r"\brdns\b",
    r"\bptr\b",
    r"\bhelo\b",
    r"\behlo\b",
    r"rate limit",
    r"too many (connections|messages|recipients|mails|sessions)",
    r"try again later",
    r"throttl",
    r"\bjunk\b",
    r"\babuse\b",
    r"virus",
    r"malware",
    r"infected",
    r"content (rejected|filter)",
    r"message (content )?rejected",
    r"\bfiltered\b",
    r"relay(ing)? (access )?(denied|not (permitted|allowed))",
    r"not permitted to relay",
    r"sender address",
    r"sender (is )?(rejected|not allowed|unknown)",
    r"rcpthosts",
    r"not allowed to send",
    r"greylist",
    r"unable to relay",
    r"relay not",
    r"starttls",
    r"\btls\b",
    r"sender address rejected",
    r"sender (verify|verification)",
    r"domain of sender",
    r"sender domain",
    r"message (is )?too (big|large)",
    r"size (limit|exceed)",
    r"exceeds? .{0,20}size",
    r"refused",
    r"not accepted",
    r"prohibited",
    r"forbidden",
    r"suspicious",
    r"bulk",
    r"complian(t|ce)",
    r"rfc ?(2822|5322|822)",
    r"syntax error",
    r"administrative prohibition",
    r"unsolicited",
    r"security",
    r"encryption",
    r"certificate",
)
# The mailbox exists but is full: it may take mail again.
FULL_WORDS = _words(
    r"quota",
    r"mailbox (is |was )?full",
    r"(mailbox|mail ?box|storage|disk) (is )?full",
    r"insufficient (system )?storage",
    r"storage allocation",
    r"exceeded storage",
    r"over ?quota",
    r"exceed(ed|s)? .{0,30}(quota|storage|size limit)",
    r"full mailbox",
    r"mailbox size limit",
    r"mailbox has exceeded",
    r"postfach (ist )?voll",
    r"bo(î|i)te (aux lettres )?pleine",
    r"buz(ó|o)n lleno",
    r"casella piena",
    r"용량(이)? 초과",
    r"메일함(이)? (가득|꽉)",
    r"容量(を)?超過",
    r"メールボックスがいっぱい",
)
# The mailbox exists but is switched off for now (disabled, suspended, inactive).
STATE_WORDS = _words(
    r"\bdisabled\b",
    r"suspended",
    r"\binactive\b",
    r"deactivated",
    r"not active",
    r"\blocked\b",
    r"on hold",
    r"frozen",
    r"no longer active",
    r"dormant",
)
# The recipient address does not exist there.
USER_UNKNOWN = _words(
    r"user unknown",
    r"unknown user",
    r"user (is )?not (found|known|exist)",
    r"unknown (local|alias)",
    r"no such (user|mailbox|recipient|address|person|account|local user)",
    r"unknown recipient",
    r"recipient unknown",
    r"recipient (is )?not (found|exist|known)",
    r"recipientnotfound",
    r"address (is )?(not found|unknown)",
    r"unknown (e-?mail )?address",
    r"mailbox (not found|unknown|does ?n[o']t exist|is unknown)",
    r"does ?n[o']t exist",
    r"do(es)? not exists?",
    r"no mailbox here by that name",
    r"not a valid (mailbox|recipient|user)",
    r"invalid (recipient|mailbox|address|user)",
    r"doesn't have an? \S+ account",
    r"(account|user|mailbox|address|recipient) (that you tried to reach )?"
    r"(does not|doesn't) exist",
    r"recipient name is not recognized",
    r"not (a )?known (user|recipient)",
    r"is not a valid",
    r"bad destination mailbox",
    r"destination (mailbox )?address (is )?invalid",
    r"not our customer",
    r"no account by that name",
    r"unknown or illegal alias",
    r"account (has been )?(removed|deleted|terminated)",
    r"user (doesn't|does not) have",
    r"no longer exists",
    r"not listed in",
    r"invalid-recipient",
    r"undeliverable address",
    r"recipient (address )?rejected: (user unknown|unknown user|undeliverable|access denied)",
    r"mailbox unavailable: user unknown",
    r"user account is (unavailable|expired)",
    r"this user doesn't have",
    r"unknown mailbox",
    r"address couldn't be found",
    r"no valid recipients?\b",
    r"no mailbox by that name",
    r"mailbox not present",
    r"no longer accepts mail",
    r"invalid or unknown virtual user",
    r"archived recipient",
    r"destination addresses? (were|was|is) unknown",
    # The same in other languages (German, French, Spanish, Portuguese, Italian).
    r"(empf(ä|ae)nger|benutzer|adresse|postfach) (ist )?unbekannt",
    r"(adresse|destinataire|utilisateur) (\S+ )?(inconnue?|invalide|inexistante?)",
    r"usuario (desconocido|inexistente|no existe)",
    r"utente (sconosciuto|inesistente)",
    r"(usu(á|a)rio|destinat(á|a)rio) (desconhecido|inexistente)",
    # Korean and Japanese carriers' and portals' own words.
    r"존재하지 않는 (계정|주소|사용자|아이디|메일)",
    r"(수신자|받는 ?사람)(를|을)? 찾을 수 없",
    r"存在しない(アドレス|ユーザ|メールアドレス)",
    r"宛先(が)?不明",
    r"该用户不存在",
)
# The recipient's domain does not exist or takes no mail at all.
HOST_UNKNOWN = _words(
    r"host or domain name not found",
    r"host (\S+ )?(not found|unknown)",
    r"domain (not found|does not exist|doesn't exist|unknown|name not found)",
    r"no such domain",
    r"unroute?able",
    r"unknown host",
    r"no (mx|mail exchanger)",
    r"unable to route",
    r"illegal host/domain",
    r"nxdomain",
    r"domain .{0,60} does not accept mail",
    r"does not accept mail",
    r"null mx",
    r"bad destination system",
    r"unknown domain",
    r"no mx record",
    r"domaine inexistant",
    r"dom(ä|ae)ne (existiert nicht|unbekannt)",
    r"domain (is )?not (valid|resolvable|reachable)",
    r"name or service not known",
    r"mx records point to non-?existent hosts",
    r"couldn't find any host (named|by that name)",
)
# A failure the server itself calls passing (DNS lookups that may succeed later, ...).
TEMPORARY_WORDS = _words(
    r"try again later",
    r"try later",
    r"temporar",
    r"timed? ?out",
    r"timeout",
    r"retry",
    r"lookup fail",
    r"connection (refused|reset|lost)",
    r"server busy",
)
# Where in the SMTP dialogue the server refused, in the words each mail system uses (Postfix
# "in reply to RCPT TO command", Exim "after RCPT TO:<...>" / "after end of data", Sendmail
# ">>> DATA" transcripts, qmail "does not like recipient" / "most progress was RCPT TO" /
# "failed after I sent the message", OpenSMTPD "did not like our RCPT TO", Yahoo "[RCPT_TO]").
# A refusal of MAIL FROM is about our sender. A "user unknown" at RCPT TO is the server's
# directory speaking; after DATA the recipient had been accepted, so the same words are a
# filter's (Japanese carriers answer "550 User unknown" to a message their domain filter
# refuses).
MAIL, RCPT, DATA = "MAIL FROM", "RCPT TO", "DATA"
_STAGES = re.compile(
    r"(?P<mail>(?:after|in reply to|response to) (?:the )?mail from|>>> ?mail from"
    r"|did not like our mail from)"
    r"|(?P<rcpt>(?:after|in reply to|response to|for) (?:the )?rcpt\b|>>> ?rcpt\b"
    r"|\brcpt to:?\s*<|\[rcpt_to\]|does not like recipient|did not like our rcpt"
    r"|smtp:rcpt\b|rcpt to response)"
    r"|(?P<data>(?:after|in reply to|response to|for) (?:the )?(?:end of )?data\b|>>> ?data\b"
    r"|failed after i sent the message|did not like our data)"
)


_STAGE_WORDS = (
    "mail from",
    "rcpt",
    "data",
    "does not like recipient",
    "failed after i sent the message",
)


def smtp_stage(text: str) -> str | None:
    """The SMTP command the refusal answered, as `text` last names it (None: not said)."""
    lowered = text.lower()
    # Every alternative of _STAGES contains one of these: a text without them (most) skips the
    # regex, which otherwise tries each alternative at every position.
    if not any(word in lowered for word in _STAGE_WORDS):
        return None
    last = None
    for found in _STAGES.finditer(lowered):
        last = found
    if last is None:
        return None
    return {"mail": MAIL, "rcpt": RCPT, "data": DATA}[last.lastgroup or ""]


# Phrasings in which the receiving system reports its own directory lookup of the recipient:
# Exchange 2003's IMS code 000C05A6 "The recipient name is not recognized", Lotus Notes' "not
# listed in public Name & Address Book", Exchange's RESOLVER.ADR.RecipientNotFound, Gmail's
# "Address not found" notice, qmail-local's "no mailbox here by that name", IMail's "Unknown
# user: <address>", Verizon's MMS gateway, Yahoo's "dd This user doesn't have a ... account"
# (Yahoo refuses unknown users after DATA), La Poste's LPN007_416. They name the address as
# unknown without a status code or a stage and make a hard bounce; a bare "user unknown" does
# not.
_DIRECTORY_VERDICT = _words(
    r"recipient name is not recognized",
    r"\(000c05a6\)",
    r"not listed in (the )?(public )?(name (&|and) address book|domino directory)",
    r"recipientnotfound",
    r"recipient not found by smtp address lookup",
    r"address couldn't be found",
    r"\*\* address not found \*\*",
    r"no mailbox here by that name",
    r"unknown user: +<address>",
    r"no valid recipients for this mm",
    r"\bdd this user doesn't have an? \S+ account",
    r"invalid recipient\. lpn\d+_41[68]",
)
# RFC 7505 (null MX) and RFC 7504 (521/556): the destination host or domain takes no mail.
_NULL_MX = _words(r"(host|domain) (\S+ )?does not accept mail")
# DNS trouble while looking the domain up (Postfix): not proof that the domain does not exist.
_NETWORK_WORDS = _words(r"name service error", r"name server reply", r"servfail")
# Anchored at the start of a run of non-delimiters, so that a long run costs one pass.
_ADDRESS = re.compile(r"(?<![^\s<>()\[\]])[^\s<>()\[\]@]+@[^\s<>()\[\]]+")
# A server's reason is at the start of what it says about a recipient: beyond this, text is
# boilerplate or a quoted message, and reading it only costs time.
MAX_TEXT = 10_000
_URL_PATH = re.compile(r"\b((?:https?|ftp)://[^/\s]+)\S*", re.I)
# Codes that say the destination address itself is bad: x.1.1 bad mailbox, x.1.2 bad system,
# x.1.6 moved (no forwarding), x.1.10 (Office 365: recipient not found), x.4.4 unable to route.
_HARD_CODES = frozenset({(1, 1), (1, 2), (1, 6), (1, 10), (4, 4)})


def best_code(status: str | None, text: str) -> str | None:
    """The most telling enhanced code: the server's own (in its words) unless it is x.0.0.

    The Status field is the reporting MTA's summary; the remote server's reply, quoted in the
    Diagnostic-Code, says what it meant (Sendmail reports Status 5.1.1 for "550 5.7.1 IP address
    blacklisted"), so the reply wins when both are of the same class and it is specific.
    """
    found = ENHANCED.search(status or "")
    from_status = ".".join(found.groups()) if found else None
    in_text = ENHANCED.search(text)
    from_text = ".".join(in_text.groups()) if in_text else None
    if (
        from_text
        and not from_text.endswith(".0.0")
        and (from_status is None or from_text[0] == from_status[0])
    ):
        return from_text
    if from_status and not from_status.endswith(".0.0"):
        return from_status
    return from_status or from_text


def judge(
    action: str | None,
    status: str | None,
    text: str | None,
    *,
    permanent: bool,
    context: str = "",
    gateway: str | None = None,
) -> tuple[str, str | None, str]:
    """(kind, enhanced status, evidence) for one recipient of a report.

    `permanent` says the report states a final failure (DSN `Action: failed`, or a bounce that
    is not a delay warning); `text` is the server's words (Diagnostic-Code or the bounce text);
    `context` the report's own text about this recipient, read only for the SMTP stage at which
    the server refused (MAIL FROM, RCPT TO, DATA); `gateway` the content-filtering product
    that wrote the report, if any (a filter's "user unknown" is its verdict, not proof).
    """
    action = (action or "").strip().lower()
    text = " ".join((text or "")[:MAX_TEXT].split())
    context = context[:MAX_TEXT]
    code = best_code(status, text)
    if action.startswith("delayed"):
        return DELAYED, code, "Action: delayed (still being retried)"
    if action and not action.startswith(("failed", "fail", "error")):
        return IGNORED, code, f"Action: {action} (not a failure)"
    basic = _BASIC.search(text.replace("smtp;", " "))
    klass = code[0] if code else (basic.group(1)[0] if basic else "")
    subject, detail = (int(x) for x in code.split(".")[1:]) if code else (0, 0)
    if klass == "2":
        return IGNORED, code, f"status {code} (success)"
    if code and subject == 1 and detail in (7, 8):
        return BLOCK, code, f"status {code} (about the sender's address, not the recipient)"
    # The server's own words name the stage first; the report's text around them otherwise.
    stage = smtp_stage(text) or smtp_stage(" ".join(context.split()))
    # Words inside addresses and the paths of links ("filtered@example.jp",
    # ".../reason/#filtered") say nothing about the failure; a link's host may (spamhaus.org).
    text = _URL_PATH.sub(r"\1", _ADDRESS.sub(" <address> ", text)).lower()
    if stage == MAIL:
        return BLOCK, code, "refused at MAIL FROM: about our sender, not the recipient"
    words = BLOCK_WORDS.search(text)
    # At RCPT TO the server judges the recipient: its "user unknown" (or Postfix's and Office
    # 365's "Recipient address rejected: Access denied") outweighs a policy code such as 5.7.1
    # (Sendmail reports Status 5.7.1 for a bare "553 Invalid recipient"). RFC 7505's "does not
    # accept mail" names the destination host as taking no mail at all, whatever the code.
    rcpt_gone = bool(stage == RCPT and USER_UNKNOWN.search(text))
    null_mx = _NULL_MX.search(text)
    if words or (subject == 7 and not rcpt_gone and not null_mx):
        said = f"{words.group(0)!r}" if words else f"status {code}"
        return BLOCK, code, f"refusal about the sender or content: {said} (never suppresses)"
    full = FULL_WORDS.search(text)
    if full:
        return SOFT, code, f"the mailbox is full: {full.group(0)!r}"
    if klass == "4":
        return SOFT, code, f"temporary failure{' ' + code if code else ''}, given up"
    # RFC 7504: reply 521 (this host) and 556 (this domain) "does not accept mail" at all.
    hard_code = bool(code and klass == "5" and (subject, detail) in _HARD_CODES) or bool(
        basic and basic.group(1) in ("521", "556")
    )
    state = STATE_WORDS.search(text)
    if state and not hard_code:
        return SOFT, code, f"the mailbox exists but is switched off: {state.group(0)!r}"
    host_gone = HOST_UNKNOWN.search(text)
    gone = host_gone or USER_UNKNOWN.search(text)
    network = _NETWORK_WORDS.search(text)
    if network and (not gone or "try again" in text):
        return SOFT, code, f"a DNS lookup failed: {network.group(0)!r} (not proof of anything)"
    directory = _DIRECTORY_VERDICT.search(text)
    if gone and stage == DATA and not hard_code and not directory:
        return SOFT, code, f"{gone.group(0)!r} after DATA: a content filter, not the address"
    if gone and gateway and not hard_code:
        return (
            SOFT,
            code,
            (
                f"{gone.group(0)!r} from a filtering gateway ({gateway}) without "
                "5.1.1: its filter's verdict, not proof the address is gone"
            ),
        )
    # "User unknown" proves the address gone only where something ties it to the address: a
    # status code about the address (x.1.x other than the sender's), a refusal at RCPT TO, or
    # the receiving system's own directory verdict. Without them it is what a recipient's
    # filter says too (the domain filters of Japanese carriers, gateways), so keep the address.
    address_code = bool(code and klass == "5" and subject == 1 and detail not in (4, 5, 9))
    if gone and not host_gone and not (hard_code or address_code or rcpt_gone or directory):
        return (
            SOFT,
            code,
            (
                f"{gone.group(0)!r} with no status code about the address and no "
                "refusal at RCPT TO: a filter's answer as often as a missing address"
            ),
        )
    if gone and (klass == "5" or (permanent and not klass)):
        return HARD, code, f"permanent failure: {gone.group(0)!r}" + (f" ({code})" if code else "")
    passing = TEMPORARY_WORDS.search(text)
    if passing:
        return SOFT, code, f"a failure the server calls passing: {passing.group(0)!r}"
    if subject == 2:
        return SOFT, code, f"status {code} (mailbox state: full or disabled)"
    if hard_code:
        said = (
            f"status {code}"
            if code and (subject, detail) in _HARD_CODES
            else f"reply {basic.group(1) if basic else ''}"
        )
        return HARD, code, f"{said} (bad destination address, or a domain that takes no mail)"
    if code and subject == 6:
        return BLOCK, code, f"status {code} (content refusal; never suppresses)"
    if klass == "5" and code and not code.endswith(".0.0"):
        return SOFT, code, f"status {code} (not about the address)"
    return SOFT, code, "failure without a stated reason"

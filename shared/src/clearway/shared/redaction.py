"""The one redaction layer every log line and span attribute passes through.

docs/design.md §9: PANs never reach a log, a trace or a topic (found by the one
detector, ``clearway.shared.cards``); secrets,
``Authorization`` values and email addresses are masked; ids (``tr_…``,
``evt_…``, ``corr_…``, UUIDs, trace ids) and correlation context stay intact
so an SRE can still follow a flow.

Pure functions, no I/O. Patterns are compiled once; ``redact_text`` makes
at most one regex pass over its input, with only the rules that cheap
substring checks say could match (most log lines need none), then lets
``cards.mask_cards`` mask card numbers (a digit count first, so most lines cost
nothing there either).

Masked forms:

- a PAN becomes ``[PAN ****4242]`` (last four digits only), in any of the forms
  ``cards`` recognises (separators, fullwidth digits, ``\\u0034`` escapes);
- ``Bearer <token>`` becomes ``Bearer [REDACTED]``;
- a JWT becomes ``[REDACTED JWT]``;
- a prefixed secret keeps its prefix: ``whsec_[REDACTED]``;
- ``password=…``, ``"client_secret": "…"``, ``Authorization: …`` keep the key;
- the password of a URL (``postgresql://user:pw@host``) becomes ``[REDACTED]``;
- an email keeps its first character and domain: ``a***@example.com``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final, TypeGuard, overload
from urllib.parse import quote, unquote_plus

from clearway.shared.cards import mask_cards

REDACTED: Final = "[REDACTED]"

SECRET_PREFIXES: Final[tuple[str, ...]] = (
    # Clearway client secrets as issued by the consent service.
    "clearway_secret_",
    # Standard Webhooks signing secrets (docs/design.md §6).
    "whsec_",
    # OAuth client secrets (``cs_live_…``, ``cs_test_…`` included).
    "cs_",
    # Stripe-style secret API keys a partner may paste into a request.
    "sk_live_",
    "sk_test_",
)
"""Values starting with one of these (at a word boundary) are secrets.

The prefix is kept and the rest masked (``whsec_[REDACTED]``) so a log still
says *which kind* of secret was there. Id prefixes (``tr_``, ``evt_``,
``msg_``, ``ep_``, ``cns_``, ``corr_``) must never be added here.
"""

SENSITIVE_KEYS: Final[frozenset[str]] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "password",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "x-api-key",
        "pan",
        "card_number",
        "cvv",
        "cvc",
        "cookie",
        "set-cookie",
        # OAuth credentials that travel in URLs and forms
        "request_uri",  # RFC 9126 pushed authorization request reference
        "code_verifier",  # RFC 7636
        "client_assertion",  # RFC 7523
    }
)
"""Keys whose values are always replaced by ``[REDACTED]``, whatever they hold.

Matching ignores case, ``-`` and ``_`` (``Client-Secret``, ``clientSecret``
and ``CLIENT_SECRET`` are the same key). Keys *ending* in one of
``SENSITIVE_KEY_SUFFIXES`` (``db_password``, ``webhook_secret``,
``csrf_token``) are sensitive as well.
"""

SENSITIVE_KEY_SUFFIXES: Final[tuple[str, ...]] = (
    "password",
    "secret",
    "token",
    "apikey",
    "authorization",
    "privatekey",
)

_MAX_DEPTH: Final = 32


def _normalise_key(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "")


_SENSITIVE_NORMALISED: Final = frozenset(_normalise_key(k) for k in SENSITIVE_KEYS)


def _key_pattern(keys: frozenset[str] | set[str]) -> str:
    # Longest first so ``client_secret`` wins over ``secret``; ``-``/``_`` optional.
    parts = (re.escape(k).replace(r"\-", "[-_]?").replace("_", "[-_]?") for k in keys)
    return "|".join(sorted(parts, key=len, reverse=True))


_COOKIE_KEYS: Final = {"cookie", "set-cookie"}
_NOT_YET_REDACTED: Final = r"(?!\[(?:REDACTED|PAN ))"
_QUOTED: Final = r"\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'"
_HEX: Final = "[0-9A-Fa-f]"
# ``key=v``, ``key: v``, ``"key": "v"`` and, for quoted keys, the tuple form
# ``('authorization', 'v')`` / ``(b'cookie', b'v')`` of ASGI header lists.
_SEP: Final = r"[\"']?[ \t]*[:=][ \t]*+|[\"'][ \t]*,[ \t]*+b?(?=[\"'])"

# Alternatives are tried left to right at each position, so the ones that
# *keep* a value (UUIDs, traceparent) come first.
_KEEP: Final = (
    rf"(?<![0-9A-Za-z-])(?:{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
    rf"|{_HEX}{{2}}-{_HEX}{{32}}-{_HEX}{{16}}-{_HEX}{{2}})(?![0-9A-Za-z-])"
)
_KV: Final = (
    rf"(?<![0-9A-Za-z])(?P<kv_key>(?i:{_key_pattern(set(SENSITIVE_KEYS) - _COOKIE_KEYS)}))"
    rf"(?P<kv_sep>{_SEP})"
    rf"(?P<kv_val>{_QUOTED}|(?i:(?:bearer|basic|digest|negotiate|token)[ \t]+)?"
    rf"{_NOT_YET_REDACTED}[^\s\"',;&)}}\]]+)"
)
_COOKIE: Final = (
    rf"(?<![0-9A-Za-z])(?P<ck_key>(?i:{_key_pattern(_COOKIE_KEYS)}))"
    rf"(?P<ck_sep>{_SEP})"
    rf"(?P<ck_val>{_QUOTED}|{_NOT_YET_REDACTED}[^\r\n\"']+)"
)
# RFC 3986 userinfo: keep the user, mask the password.
_URL_USERINFO: Final = r"(?P<url_user>://[^\s/:@]+):(?P<url_pw>[^\s/@]+)@"
# RFC 6750 b64token.
_BEARER: Final = (
    rf"(?<![0-9A-Za-z])(?P<bearer>(?i:bearer))\s+{_NOT_YET_REDACTED}[A-Za-z0-9\-._~+/]+=*"
)
# RFC 7519 compact JWS (3 segments) or JWE (5 segments).
_JWT: Final = (
    r"(?<![0-9A-Za-z_-])eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
    r"(?:\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)?"
)
_SECRET: Final = (
    rf"(?<![0-9A-Za-z_])(?P<sec_prefix>"
    rf"{'|'.join(re.escape(p) for p in sorted(SECRET_PREFIXES, key=len, reverse=True))})"
    rf"{_NOT_YET_REDACTED}[A-Za-z0-9+/=_.-]++"
)
_EMAIL: Final = (
    r"(?<![A-Za-z0-9._%+-])(?P<em_first>[A-Za-z0-9])[A-Za-z0-9._%+-]*+"
    r"@(?P<em_domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,})"
    r"(?![A-Za-z0-9_-])"
)
_RULE_PATTERNS: Final = (
    ("keep", _KEEP),
    ("kv", _KV),
    ("cookie", _COOKIE),
    ("url", _URL_USERINFO),
    ("bearer_rule", _BEARER),
    ("jwt", _JWT),
    ("secret", _SECRET),
    ("email", _EMAIL),
)
# Every key in SENSITIVE_KEYS contains one of these (lowercased) words.
_KV_HINTS: Final = (
    "auth",
    "pass",
    "secret",
    "token",
    "api",
    "pan",
    "card",
    "cvv",
    "cvc",
    "request_uri",
    "request-uri",
    "requesturi",
    "verifier",
    "assertion",
)


@functools.cache
def _rules(names: tuple[str, ...]) -> re.Pattern[str]:
    """One alternation of the named rules, in precedence order (at most 2**8 of them)."""
    return re.compile(
        "|".join(f"(?P<{name}>{pattern})" for name, pattern in _RULE_PATTERNS if name in names),
        re.ASCII,
    )


def _rules_for(s: str) -> tuple[str, ...]:
    """The rules that could match somewhere in ``s``, by cheap necessary conditions.

    A rule that cannot match is left out of the scan, which then gives the same
    result as the full alternation at a fraction of the cost: most log lines
    need no rule at all.
    """
    lower = s.lower()
    has_separator = ":" in s or "=" in s or "," in s
    names: list[str] = []
    if has_separator and any(hint in lower for hint in _KV_HINTS):
        names.append("kv")
    if has_separator and "cookie" in lower:
        names.append("cookie")
    if "://" in s:
        names.append("url")
    if "bearer" in lower:
        names.append("bearer_rule")
    if "eyJ" in s:
        names.append("jwt")
    if any(prefix in s for prefix in SECRET_PREFIXES):
        names.append("secret")
    if "@" in s:
        names.append("email")
    return ("keep", *names) if names else ()


def _mask_quoted(value: str) -> str:
    if value[:1] in ("'", '"'):
        return f"{value[0]}{REDACTED}{value[0]}"
    return REDACTED


def _replace(m: re.Match[str]) -> str:
    kind = m.lastgroup
    if kind == "kv":
        return f"{m['kv_key']}{m['kv_sep']}{_mask_quoted(m['kv_val'])}"
    if kind == "cookie":
        return f"{m['ck_key']}{m['ck_sep']}{_mask_quoted(m['ck_val'])}"
    if kind == "url":
        return f"{m['url_user']}:{REDACTED}@"
    if kind == "bearer_rule":
        return f"{m['bearer']} {REDACTED}"
    if kind == "jwt":
        return "[REDACTED JWT]"
    if kind == "secret":
        return f"{m['sec_prefix']}{REDACTED}"
    if kind == "email":
        return f"{m['em_first']}***@{m['em_domain']}"
    return m.group()  # "keep": UUIDs and traceparents pass through untouched


def redact_text(s: str) -> str:
    """Mask PANs, bearer tokens, JWTs, prefixed secrets, credentials and emails in ``s``.

    Ids (``tr_…``, ``evt_…``, ``corr_…``), UUIDs and hex trace ids are left as
    they are, and so are digit runs that fail the Luhn check. The masks
    themselves (``[REDACTED]``, ``[PAN ****4242]``) are never masked again, so
    redacting text twice is harmless.
    """
    names = _rules_for(s)
    return mask_cards(_rules(names).sub(_replace, s) if names else s)


def is_sensitive_key(key: str | bytes) -> bool:
    """Whether values under ``key`` are secret (see ``SENSITIVE_KEYS``)."""
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    normalised = _normalise_key(key)
    return normalised in _SENSITIVE_NORMALISED or normalised.endswith(SENSITIVE_KEY_SUFFIXES)


@overload
def redact_value(obj: str) -> str: ...
@overload
def redact_value(obj: Mapping[Any, Any]) -> dict[Any, Any]: ...
@overload
def redact_value(obj: object) -> object: ...
def redact_value(obj: object) -> object:
    """A redacted copy of ``obj``, walking dicts, lists, tuples and sets.

    Values under a sensitive key (``SENSITIVE_KEYS``: any case, ``-`` or
    ``_``) become ``[REDACTED]``, and so does the value of a ``(key, value)``
    pair such as an ASGI header; every other string or bytes value, keys
    included, goes through ``redact_text``. Other objects are returned as they
    are. Nesting deeper than 32 levels is cut off as ``[TRUNCATED]`` so a
    cycle cannot hang a log.
    """
    return _redact(obj, 0)


def _redact(obj: object, depth: int) -> object:
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, bytes):
        # latin-1 maps every byte to one character and back, so nothing is lost.
        return redact_text(obj.decode("latin-1")).encode("latin-1")
    if depth >= _MAX_DEPTH and isinstance(obj, Mapping | list | tuple | set | frozenset):
        return "[TRUNCATED]"
    if isinstance(obj, Mapping):
        return {
            _redact(key, depth + 1): (
                REDACTED
                if _is_key_like(key) and is_sensitive_key(key)
                else _redact(value, depth + 1)
            )
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [_redact(item, depth + 1) for item in obj]
    if isinstance(obj, tuple):
        if len(obj) == 2 and _is_key_like(obj[0]) and is_sensitive_key(obj[0]):
            return (obj[0], REDACTED)
        return tuple(_redact(item, depth + 1) for item in obj)
    if isinstance(obj, set | frozenset):
        return type(obj)(_redact(item, depth + 1) for item in obj)
    return obj


def _is_key_like(key: object) -> TypeGuard[str | bytes]:
    return isinstance(key, str | bytes)


SENSITIVE_QUERY_PARAMS: Final[frozenset[str]] = frozenset(
    {
        "code",  # RFC 6749 §4.1.2 authorization code
        "assertion",  # RFC 7521 §4.1
    }
)
"""Query parameters that are credentials in a URL, besides ``SENSITIVE_KEYS`` (too
common as words to be masked in free text)."""

#: Span attributes holding a URL (OpenTelemetry semantic conventions; ``url.query``
#: holds only the query and goes through ``redact_query``).
URL_ATTRIBUTES: Final[frozenset[str]] = frozenset(
    {"url.full", "http.url", "http.target", "url.original"}
)


def redact_url(url: str) -> str:
    """``url`` with credential query values masked (see :func:`redact_query`); the
    rest (path, userinfo password, fragment) goes through ``redact_text``."""
    head, sep, rest = url.partition("?")
    if not sep:
        return redact_text(url)
    query, hash_sep, fragment = rest.partition("#")
    tail = hash_sep + redact_text(fragment) if hash_sep else ""
    return redact_text(head) + sep + redact_query(query) + tail


def redact_query(query: str) -> str:
    """A query string with parameters named in ``SENSITIVE_QUERY_PARAMS`` or
    ``SENSITIVE_KEYS`` masked (``request_uri=[REDACTED]``, the name kept); every
    other value goes through ``redact_text``, decoded first so that
    ``alice%40example.com`` is found too. Ids and cursors stay as they are."""
    parts = []
    for pair in query.split("&") if query else ():
        name, eq, value = pair.partition("=")
        plain = unquote_plus(name)
        if plain in SENSITIVE_QUERY_PARAMS or is_sensitive_key(plain):
            parts.append(f"{name}{eq}{REDACTED}" if eq else name)
            continue
        decoded = unquote_plus(value)
        masked = redact_text(decoded)
        parts.append(f"{name}{eq}{value if masked == decoded else quote(masked, safe='[]*@')}")
    return "&".join(parts)


def redact_attribute(key: str, value: Any) -> Any:
    """A span or event attribute as it may be exported: same rules as the logs.

    A sensitive key (its last dotted segment, e.g. ``http.request.header.authorization``)
    masks the whole value; URL attributes go through :func:`redact_url`; other
    strings (and sequences of them) through ``redact_text``. Numbers and booleans
    are kept.
    """
    if is_sensitive_key(key.rsplit(".", 1)[-1]):
        return REDACTED
    if isinstance(value, str):
        if key == "url.query":
            return redact_query(value)
        return redact_url(value) if key in URL_ATTRIBUTES else redact_text(value)
    if isinstance(value, list | tuple):
        return tuple(redact_attribute(key, v) for v in value)
    return value

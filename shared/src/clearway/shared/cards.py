"""The one card-number (PAN) detector: edge refusal, intent consumers and log redaction.

docs/design.md §9: a card number reaches no log, span, table or topic except the
vault's ciphertext. Every check that asks "is there a card number here?" calls
this module, on *decoded* values: the HTTP edge walks the parsed JSON body (keys
and values), the query parameters, the path and the headers; intent consumers
walk the event data; the log and span redaction masks what it finds here.

What counts as a card number: 13 to 19 digits passing the Luhn check (ISO/IEC
7812-1 Annex B) whose first digit is a payment-card industry (2-6, 8, 9; ``1``
only for 15-digit UATP; a 13-digit number only when it is a Visa ``4…``), leading
zeros ignored. Epoch timestamps in milli-, micro- and nanoseconds start with
``1`` and are therefore never card numbers.

What is decoded first, so that a number cannot hide behind an encoding:

- Unicode: NFKC (fullwidth digits U+FF10-U+FF19) and every other decimal digit
  (``str.isdecimal``: Arabic-Indic, Devanagari, …) become ASCII digits;
- escapes that spell a digit: ``\\u0034`` (or ``\\uff14``, any decimal digit),
  ``%34``, ``&#52;``/``&#x34;`` (a JSON string inside a JSON string, a logged
  ``repr``, a URL inside a value, HTML).

Digit groups may be separated by up to three of: any whitespace, ``-``, ``.``,
``/``, ``_``, ``\\``, ``|``, ``,``, ``+`` in any mix (``4111.1111.1111.1111``,
``4111  1111  1111  1111``, ``4111-1111 1111_1111``); a number may be glued to
other text (``tok_4111…``, ``card4111…``). A card number starts and ends on
group boundaries (``4111 1111 1111 1111 123``: a number and its CVV).

Tokens that are ids, not text, are left alone so that they never trip the
check: UUIDs, W3C ``traceparent`` values, JWTs, and random hex ids (24 or more
hex characters alternating letters and digits at least six times, as digests
and trace ids do). A number deliberately buried in such a token is not found;
this detector stops card numbers written as people write them, not an insider
encoding one on purpose.

Pure functions, no I/O; linear in the input (one regex pass, then work bounded
by 19 digits per group start).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Final

PAN_MIN: Final = 13
PAN_MAX: Final = 19
_LUHN_DOUBLE: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_MAX_DEPTH: Final = 64

Loc = tuple[str | int, ...]

# Digit groups and the separators allowed between them. The two classes are
# disjoint, so the pattern cannot backtrack: one linear pass.
_SEPARATOR: Final = r"[\s\-./_\\|,+]"
_RUN: Final = re.compile(rf"[0-9]+(?:{_SEPARATOR}{{1,3}}[0-9]+)*")
_GROUP: Final = re.compile("[0-9]+")
_DIGITS: Final = b"0123456789"

# Escapes that may spell a digit: a JSON/Python ``\\uXXXX`` (any Unicode decimal digit,
# ``\\uff14`` included), ``%3X``, ``&#4X;``/``&#5X;``/``&#x3X;``.
_ESCAPED_DIGIT: Final = re.compile(
    r"\\u([0-9a-fA-F]{4})|%3([0-9])|&#(?:(4[89]|5[0-7])|[xX]3([0-9]));?"
)

_HEX: Final = "[0-9A-Fa-f]"
_ID_TOKENS: Final = re.compile(
    rf"(?<![0-9A-Za-z])(?:"
    rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"  # UUID
    rf"|{_HEX}{{2}}-{_HEX}{{32}}-{_HEX}{{16}}-{_HEX}{{2}}"  # traceparent
    rf"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"  # JWT (RFC 7519)
    rf"|{_HEX}{{24,}}"  # candidate random hex id, see _is_id
    rf")(?![0-9A-Za-z])"
)
_HEX_SWITCH: Final = re.compile(r"(?:[0-9](?=[A-Fa-f])|[A-Fa-f](?=[0-9]))")


def luhn_valid(digits: str) -> bool:
    """Whether an ASCII digit string passes the Luhn (mod 10) check.

    Length is not checked here. Anything that is not purely ASCII digits is invalid.
    """
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        total += _LUHN_DOUBLE[digit] if position % 2 else digit
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    """Whether ``digits`` (ASCII digits only) is a card number by the rules above."""
    digits = digits.lstrip("0")
    n = len(digits)
    return PAN_MIN <= n <= PAN_MAX and _plausible(digits[0], n) and luhn_valid(digits)


def normalise(text: str) -> str:
    """``text`` with every way of writing a digit turned into an ASCII digit.

    NFKC folds compatibility forms (fullwidth, superscripts, circled digits);
    any remaining Unicode decimal digit maps to its value; escapes that spell a
    digit (``\\u0034``, ``%34``, ``&#52;``) are decoded. Plain ASCII without
    ``\\``, ``%`` or ``&`` is returned as it is (the common, cheap case).
    """
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        if not text.isascii():
            text = "".join(
                str(unicodedata.decimal(c)) if not c.isascii() and c.isdecimal() else c
                for c in text
            )
    if "\\" in text or "%" in text or "&" in text:
        text = _ESCAPED_DIGIT.sub(_digit_of, text)
    return text


def _digit_of(m: re.Match[str]) -> str:
    if m.group(1):
        char = chr(int(m.group(1), 16))
        return str(unicodedata.decimal(char)) if char.isdecimal() else m.group()
    if m.group(3):
        return chr(int(m.group(3)))
    return m.group(2) or m.group(4)


def _could_hold(text: str) -> bool:
    """A cheap necessary condition: at least 13 digits (after normalisation, so every
    digit is ASCII; one C-speed pass)."""
    if len(text) < PAN_MIN:
        return False
    raw = text.encode("ascii", "ignore")
    return len(raw) - len(raw.translate(None, _DIGITS)) >= PAN_MIN


def _spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, digits)`` of every card number in normalised ``text``.

    Id tokens (UUIDs, traceparents, JWTs, random hex) are looked for only once a
    number is found (rare); when there are some, they are blanked out (same
    length, so positions hold) and the text is scanned again, so a number next
    to an id is still found and digits inside one never count.
    """
    found = _raw_spans(text)
    if not found:
        return found
    ids = [m.span() for m in _ID_TOKENS.finditer(text) if _is_id(m.group())]
    if not ids:
        return found
    chars = list(text)
    for start, end in ids:
        chars[start:end] = "x" * (end - start)
    return _raw_spans("".join(chars))


def _raw_spans(text: str) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    for run in _RUN.finditer(text):
        if run.end() - run.start() >= PAN_MIN and _could_hold(run.group()):
            found.extend(_run_spans(run.group(), run.start()))
    return found


def _is_id(token: str) -> bool:
    if len(token) < 24 or "-" in token or token.startswith("eyJ"):
        return True  # UUID, traceparent or JWT
    return len(_HEX_SWITCH.findall(token)) >= 6


def _run_spans(run: str, offset: int) -> Iterator[tuple[int, int, str]]:
    """Card numbers in one run of separated digit groups, starting and ending on
    group boundaries; the longest match from a group wins, then the scan moves on.

    Linear: Luhn sums of every candidate come from two prefix sums (one per
    parity of the last digit), so each of the at most 19 ends tried per group
    start costs O(1), even for a hostile run of thousands of one-digit groups.
    """
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    digits = "".join(run[a:b] for a, b in groups)
    ends: list[int] = []  # digit index after each group
    for a, b in groups:
        ends.append((ends[-1] if ends else 0) + b - a)
    # plain[k]/doubled[k]: Luhn sum of digits[:k] counting even/odd indices as doubled.
    plain, doubled = [0], [0]
    for k, char in enumerate(digits):
        d = ord(char) - 48
        plain.append(plain[-1] + (_LUHN_DOUBLE[d] if k % 2 == 0 else d))
        doubled.append(doubled[-1] + (d if k % 2 == 0 else _LUHN_DOUBLE[d]))
    i = 0
    while i < len(groups):
        start = ends[i - 1] if i else 0
        first = start
        while first < len(digits) and digits[first] == "0":
            first += 1
        best = -1
        for j in range(i, len(groups)):
            n = ends[j] - first
            if n > PAN_MAX:
                break
            if n >= PAN_MIN and _plausible(digits[first], n):
                # The last digit (index ends[j]-1) is not doubled: pick the sum whose
                # doubled positions have the other parity.
                sums = plain if (ends[j] - 1) % 2 else doubled
                if (sums[ends[j]] - sums[first]) % 10 == 0:
                    best = j
        if best < 0:
            i += 1
        else:
            yield offset + groups[i][0], offset + groups[best][1], digits[first : ends[best]]
            i = best + 1


def _plausible(first: str, n: int) -> bool:
    if n == PAN_MIN:
        return first == "4"
    return first != "7" and (first != "1" or n == 15)


def find_cards(text: str) -> list[str]:
    """Every card number in ``text``, as bare digits (normalised, separators removed).

    The result is itself sensitive: never log, store or echo it.
    """
    text = normalise(text)
    if not _could_hold(text):
        return []
    return [digits for _, _, digits in _spans(text)]


def has_card(text: str) -> bool:
    """Whether ``text`` holds a card number (see the module doc for what counts)."""
    return bool(find_cards(text))


def mask_cards(text: str) -> str:
    """``text`` with each card number replaced by ``[PAN ****4242]`` (last four digits).

    Text without a card number is returned unchanged; text with one comes back
    normalised (see :func:`normalise`) around the masks.
    """
    normal = normalise(text)
    if not _could_hold(normal):
        return text
    spans = _spans(normal)
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end, digits in spans:
        out.append(normal[last:start])
        out.append(f"[PAN ****{digits[-4:]}]")
        last = end
    out.append(normal[last:])
    return "".join(out)


def card_locations(doc: object, loc: Loc = ()) -> Iterator[Loc]:
    """Where in a decoded JSON document card numbers sit, as locations such as
    ``("metadata", "card")`` or ``("items", 2)``.

    Keys are checked too: a key holding a card number is reported as the object
    around it, so the location never quotes the number. Integers are checked as
    digit strings (a number sent as a JSON number). Nesting past 64 levels is
    reported as the location where it starts.
    """
    yield from _walk(doc, loc, 0)


def _walk(doc: object, loc: Loc, depth: int) -> Iterator[Loc]:
    if isinstance(doc, str):
        if has_card(doc):
            yield loc
    elif isinstance(doc, bool):
        return
    elif isinstance(doc, int):
        if doc >= 10 ** (PAN_MIN - 1) and is_card_number(str(doc)):
            yield loc
    elif depth >= _MAX_DEPTH and isinstance(doc, Mapping | list | tuple):
        yield loc
    elif isinstance(doc, Mapping):
        for key, value in doc.items():
            if isinstance(key, str) and has_card(key):
                yield loc
            yield from _walk(value, (*loc, key), depth + 1)
    elif isinstance(doc, list | tuple):
        for index, item in enumerate(doc):
            yield from _walk(item, (*loc, index), depth + 1)


def first_card_location(doc: object) -> Loc | None:
    """The first of :func:`card_locations`, or ``None`` when ``doc`` holds no card number."""
    return next(card_locations(doc), None)


def mask_cards_in(doc: object) -> object:
    """A copy of a decoded JSON document with every card number masked, keys included."""
    if isinstance(doc, str):
        return mask_cards(doc)
    if isinstance(doc, bool):
        return doc
    if isinstance(doc, int):
        text = str(doc)
        return mask_cards(text) if is_card_number(text) else doc
    if isinstance(doc, Mapping):
        return {mask_cards_in(k): mask_cards_in(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [mask_cards_in(item) for item in doc]
    return doc

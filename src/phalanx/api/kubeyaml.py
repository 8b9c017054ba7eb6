"""How kubectl turns YAML scalars into the JSON it sends: YAML 1.1, as go-yaml v2 reads it.

kubectl converts a manifest with sigs.k8s.io/yaml (go-yaml v2 underneath), then decodes the JSON into
unstructured data (integers become int64, other numbers float64) and encodes it again. So an unquoted
`0777` is 511, `yes`/`on`/`y` are true, `1_000` is 1000, `1.0` is sent as 1, and a timestamp stays the
text it was written as. These pure functions give, for one scalar, the value kubectl sends; yamlfile.py
applies them to every node of a document. `hack/control-plane/yamljson` is the real decoder the
cluster tier compares them with.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
TIMESTAMP = "tag:yaml.org,2002:timestamp"
BINARY = "tag:yaml.org,2002:binary"
MERGE = "tag:yaml.org,2002:merge"
_RESOLVABLE = frozenset({STR, INT, FLOAT, BOOL, NULL, TIMESTAMP})

_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64_MAX = (1 << 64) - 1
_JSON_EXPONENT_FROM = 1e21  # Go's encoding/json writes floats at or above this with an exponent

_WORDS: dict[str, tuple[str, Any]] = {}
for _tag, _value, _words in (
    (BOOL, True, "y Y yes Yes YES true True TRUE on On ON"),
    (BOOL, False, "n N no No NO false False FALSE off Off OFF"),
    (NULL, None, "~ null Null NULL"),
    (FLOAT, math.nan, ".nan .NaN .NAN"),
    (FLOAT, math.inf, ".inf .Inf .INF +.inf +.Inf +.INF"),
    (FLOAT, -math.inf, "-.inf -.Inf -.INF"),
):
    for _word in _words.split():
        _WORDS[_word] = (_tag, _value)
_WORDS[""] = (NULL, None)

# The first character decides which forms a plain scalar may take (go-yaml v2's resolve table).
_SIGN, _DIGIT, _WORD, _DOT = "S", "D", "M", "."
_HINTS = {**dict.fromkeys("+-", _SIGN), **dict.fromkeys("0123456789", _DIGIT)}
_HINTS.update({**dict.fromkeys("yYnNtTfFoO~", _WORD), ".": _DOT})

_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_DOT_FLOAT = re.compile(r"^\.[0-9_]+([eE][-+]?[0-9][0-9_]*)?$")
_TIMESTAMP = re.compile(
    r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"(([Tt][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?(Z|[-+][0-9]{2}:[0-9]{2}))"
    r"|( [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?))?$"
)


class ScalarError(ValueError):
    """A scalar kubectl cannot send: the whole file is refused."""


class DecodeError(ScalarError):
    """go-yaml itself fails on the scalar, wherever it is (even in a value a later key replaces)."""


class JsonError(ScalarError):
    """The value cannot be written as JSON: refused only if it is still in the data at the end."""


@dataclass(frozen=True)
class Scalar:
    """A resolved scalar: its YAML type and the JSON value kubectl sends for it."""

    tag: str
    value: Any


def _go_uint(digits: str) -> int | None:
    """strconv.ParseUint(s, 0, 64) without the range check: None on a syntax error."""
    if not digits:
        return None
    base, body = 10, digits
    if digits[0] == "0":
        prefix = digits[1:2].lower()
        if len(digits) >= 3 and prefix in ("b", "o", "x"):
            base, body = {"b": 2, "o": 8, "x": 16}[prefix], digits[2:]
        else:
            base, body = 8, digits[1:]
    value = 0
    for char in body.lower():
        if "0" <= char <= "9":
            digit = ord(char) - ord("0")
        elif "a" <= char <= "z":
            digit = ord(char) - ord("a") + 10
        else:
            return None
        if digit >= base:
            return None
        value = value * base + digit
    return value


def _go_int(text: str) -> int | None:
    """go-yaml's integer forms: ParseInt(s, 0, 64), else ParseUint(s, 0, 64) (no sign), else None."""
    sign, digits = 1, text
    if text[:1] in ("+", "-"):
        sign, digits = (-1 if text[0] == "-" else 1), text[1:]
    magnitude = _go_uint(digits)
    if magnitude is None:
        return None
    value = sign * magnitude
    if _INT64[0] <= value <= _INT64[1]:
        return value
    if text[:1] not in ("+", "-") and value <= _UINT64_MAX:
        return value
    return None


def _binary_digits(text: str) -> int | None:
    """go-yaml's own `0b…` fallback: ParseInt(rest, 2, 64), which takes a sign after the prefix."""
    if text.startswith("0b"):
        rest = text[2:]
        sign = -1 if rest[:1] == "-" else 1
        digits = rest[1:] if rest[:1] in ("+", "-") else rest
        if digits and set(digits) <= {"0", "1"}:
            value = sign * int(digits, 2)
            unsigned = rest[:1] not in ("+", "-") and value <= _UINT64_MAX
            if _INT64[0] <= value <= _INT64[1] or unsigned:
                return value
    elif text.startswith("-0b"):
        digits = text[3:]
        if digits and set(digits) <= {"0", "1"} and -int(digits, 2) >= _INT64[0]:
            return -int(digits, 2)
    return None


def _underscores_ok(text: str) -> bool:
    """Go's rule for '_' in a number: only between digits."""
    saw = "^"
    for char in text.lstrip("+-"):
        if char.isdigit():
            saw = "0"
        elif char == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _finite(text: str) -> float | None:
    value = float(text.replace("_", ""))
    return None if math.isinf(value) else value


def resolve_plain(text: str) -> Scalar:
    """An untagged plain scalar, as go-yaml v2 resolves it."""
    return _resolve(text, "")


def _resolve(text: str, tag: str) -> Scalar:
    hint = _HINTS.get(text[:1]) if text else "N"
    if hint is None or tag == STR:
        return Scalar(STR, text)
    if text in _WORDS:
        return Scalar(*_WORDS[text])
    if hint == _DOT:
        if _DOT_FLOAT.match(text) and _underscores_ok(text):
            value = _finite(text)
            if value is not None:
                return Scalar(FLOAT, value)
    elif hint in (_DIGIT, _SIGN):
        if tag in ("", TIMESTAMP) and _TIMESTAMP.match(text):
            return Scalar(TIMESTAMP, text)
        plain = text.replace("_", "")
        number = _go_int(plain)
        if number is not None:
            return Scalar(INT, number)
        if _YAML_FLOAT.match(plain):
            value = _finite(plain)
            if value is not None:
                return Scalar(FLOAT, value)
        number = _binary_digits(plain)
        if number is not None:
            return Scalar(INT, number)
    return Scalar(STR, text)


def resolve_tagged(text: str, tag: str) -> Scalar:
    """A scalar with an explicit tag (`!!int "5"`, `!!str 0777`, `!!binary ...`, `!local x`)."""
    if tag == BINARY:
        try:
            decoded = base64.b64decode(text.replace("\n", "").replace(" ", ""), validate=True)
        except (binascii.Error, ValueError):
            raise DecodeError("!!binary value contains invalid base64 data") from None
        return Scalar(STR, decoded.decode("utf-8", errors="replace"))
    if tag not in _RESOLVABLE:
        return Scalar(STR, text)  # local and unknown tags: go-yaml keeps the text
    resolved = _resolve(text, tag)
    if tag in (resolved.tag, STR):
        return resolved
    if tag == FLOAT and resolved.tag == INT and _INT64[0] <= resolved.value <= _INT64[1]:
        return Scalar(FLOAT, float(resolved.value))  # go-yaml widens int and int64, not uint64
    found, wanted = resolved.tag.rsplit(":", 1)[-1], tag.rsplit(":", 1)[-1]
    raise DecodeError(f"cannot decode !!{found} `{text}` as a !!{wanted}")


def json_value(scalar: Scalar) -> Any:
    """The value kubectl sends: numbers as they come out of Go's JSON encoder and back.

    Integers outside int64 and integral floats below 1e21 are written by Go without an exponent, from
    the shortest decimal that names the float (so they read back as integers); NaN and infinities
    cannot be written at all.
    """
    value = scalar.value
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return value
        value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise JsonError(f"{value} cannot be sent as JSON")
    if value == int(value) and abs(value) < _JSON_EXPONENT_FROM:
        return int(Decimal(repr(value)))
    return value


def _float32_text(value: float) -> str:
    """Go's strconv.FormatFloat(value, 'g', -1, 32): shortest float32 digits; %e from 1e6 and below 1e-4."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    single = struct.unpack("f", struct.pack("f", value))[0]
    for digits in range(1, 10):
        text = f"{single:.{digits - 1}e}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == single:
            break
    mantissa, exponent = text.split("e")
    power = int(exponent)
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    if power < -4 or power >= 6:
        sign = "-" if power < 0 else "+"
        return f"{mantissa}e{sign}{abs(power):02d}"
    return f"{Decimal(mantissa).scaleb(power).normalize():f}"


def json_key(scalar: Scalar) -> str:
    """A mapping key as sigs.k8s.io/yaml writes it into JSON (which has only string keys)."""
    value = scalar.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return str(value)
        raise JsonError(f"a mapping key cannot be the number {value} (beyond int64)")
    if isinstance(value, float):
        return _float32_text(value)
    raise JsonError("a mapping key cannot be null")

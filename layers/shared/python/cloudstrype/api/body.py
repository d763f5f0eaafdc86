"""Reading a request: headers, query, JSON fields and multipart parts, with 4xx errors that say
what to fix."""
from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from cloudstrype import errors

_MISSING = object()
# JSON bodies here are small (the largest field is 16 KB of attributes). The bounds keep a
# hostile body from costing memory or overflowing the parser's recursion.
MAX_JSON_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32


# The local gateway marks the events it builds with this key: the function runs in the
# gateway's own process, so large bodies travel between them as bytes (InProcessBody).
IN_PROCESS_EVENT = "cloudstrypeInProcess"
# Smaller bodies travel as base64 text exactly as in AWS (at that size the text costs nothing).
IN_PROCESS_MIN_BYTES = 64 * 1024


def base64_length(size: int) -> int:
    """The length of the base64 text of `size` bytes."""
    return 4 * ((size + 2) // 3)


class InProcessBody:
    """A large binary body as the local gateway and a function in its process hand it to each
    other: the bytes, where API Gateway and Lambda carry base64 text (`isBase64Encoded`), so
    neither side encodes nor decodes megabytes for nothing. It stands in for that text where it
    must: len() is the text's length (Lambda's payload limit counts it), and encode() gives the
    text's bytes (what chalice's own decoder asks of a body)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes):
        self.raw = raw

    def __len__(self) -> int:
        return base64_length(len(self.raw))

    def encode(self, encoding: str = "ascii") -> bytes:
        return base64.b64encode(self.raw)

    def __repr__(self) -> str:        # never megabytes in a log line
        return f"InProcessBody(<{len(self.raw)} bytes>)"


def _raw_body(request) -> bytes:
    """The request's bytes: an InProcessBody's own, else what chalice decodes from the event."""
    event = request.to_original_event()
    body = event.get("body")
    if isinstance(body, InProcessBody) and event.get("isBase64Encoded"):
        return body.raw
    return request.raw_body or b""


@dataclass
class Part:
    name: str | None
    filename: str | None
    content_type: str
    data: bytes

    def text(self) -> str:
        """A form field's value as text (UTF-8, surrounding line breaks dropped)."""
        try:
            return self.data.decode("utf-8").strip("\r\n")
        except UnicodeDecodeError:
            raise errors.BadRequest(f"Form field '{self.name}' must be UTF-8 text.",
                                    code="invalid_multipart",
                                    details={"field": self.name}) from None


def take_field(fields: dict[str, str], part: Part) -> str:
    """A form field's text, kept in `fields` under its name; a field sent twice is refused by
    name (which of the two was meant cannot be told, so neither is taken)."""
    if part.name in fields:
        raise errors.BadRequest(f"Form field '{part.name}' was sent more than once; send it "
                                f"once.", code="invalid_multipart", details={"field": part.name})
    fields[part.name] = value = part.text()
    return value


# Set in a request's context by the local server's transfer socket (infra/local/transfer.py)
# alone: its caller is a program of the server's own OS user on the server's machine. API
# Gateway builds the context itself, so no request from outside can carry it.
LOCAL_TRANSFER_CONTEXT = "cloudstrypeLocalTransfer"

# Headers that carry one value: sent twice, which was meant cannot be told (API Gateway and the
# local gateway hand the function the last one), so the request is refused by name.
SINGLE_HEADERS = ("authorization", "content-type", "range", "x-link-password")


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]          # lower-cased names
    query: dict[str, str]
    path_params: dict[str, str]
    raw_body: bytes
    principal: Any = None            # cloudstrype.auth.tokens.Principal for authenticated routes
    local_transfer: bool = False     # came through the local transfer socket
    _json: Any = field(default=_MISSING, repr=False)

    @classmethod
    def from_chalice(cls, request, path_params: dict) -> "Call":
        headers = {k.lower(): v for k, v in (request.headers or {}).items()}
        event = getattr(request, "_event_dict", None) or {}
        for name, values in (event.get("multiValueHeaders") or {}).items():
            if name.lower() in SINGLE_HEADERS and isinstance(values, list) and len(values) > 1:
                raise errors.BadRequest(f"Header '{name}' was sent {len(values)} times; send it "
                                        f"once.", code="invalid_header",
                                        details={"header": name.lower()})
        for name, value in headers.items():
            if not value.isascii() and not _encodable(value):
                # Bytes that are not UTF-8 reach here as surrogates (aiohttp, API Gateway).
                raise errors.BadRequest(f"Header '{name}' is not valid UTF-8 text.",
                                        code="invalid_header", details={"header": name})
        query = dict(request.query_params or {})
        try:
            raw = _raw_body(request)
        except Exception as exc:  # malformed base64 from a hand-built event
            raise errors.BadRequest(f"The request body could not be read: {exc}") from None
        return cls(method=request.method, path=request.path, headers=headers, query=query,
                   path_params=dict(path_params), raw_body=raw,
                   local_transfer=(getattr(request, "context", None) or {}).get(
                       LOCAL_TRANSFER_CONTEXT) is True)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    # -- JSON -----------------------------------------------------------------------------------
    def json(self) -> dict:
        """The body as a JSON object (an empty body reads as {})."""
        if self._json is _MISSING:
            if not self.raw_body.strip():
                self._json = {}
            else:
                self._json = parse_json(self.raw_body)
                if not isinstance(self._json, dict):
                    raise errors.BadRequest("The request body must be a JSON object, e.g. "
                                            '{"name": "value"}.', code="invalid_json")
        return self._json

    def only_fields(self, *names: str) -> None:
        """Refuse fields the route does not take (a misspelt one would be silently ignored)."""
        unknown = sorted(set(self.json()) - set(names))
        if unknown:
            takes = f"the fields are {', '.join(names)}" if names else "this takes no body"
            raise errors.BadRequest(f"Unknown field '{unknown[0]}'; {takes}.",
                                    code="unknown_field", details={"field": unknown[0]})

    def field(self, name: str, kind: type | tuple = str, *, required: bool = True,
              default: Any = None) -> Any:
        body = self.json()
        if name not in body or body[name] is None:
            if required:
                raise errors.BadRequest(f"Field '{name}' is required.", code="missing_field",
                                        details={"field": name})
            return default
        return check_type(name, body[name], kind)

    # -- query --------------------------------------------------------------------------------
    def query_int(self, name: str, default: int, *, minimum: int | None = None,
                  maximum: int | None = None) -> int:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        value = whole_number(raw, f"Query parameter '{name}'", "invalid_parameter")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise errors.BadRequest(f"Query parameter '{name}' must be between {minimum} and "
                                    f"{maximum}.", code="invalid_parameter")
        return value

    def path_int(self, name: str, code: str = "invalid_parameter") -> int:
        """A path parameter that is a whole number from 0."""
        return whole_number(self.path_params.get(name, ""), f"Path parameter '{name}'", code)

    # -- multipart ----------------------------------------------------------------------------
    def multipart(self) -> list[Part]:
        header = self.header("content-type") or ""
        if self.content_type != "multipart/form-data":
            raise errors.UnsupportedMediaType(
                "This endpoint takes multipart/form-data: send the fields and the data as form "
                "parts.")
        match = re.search(r'boundary="?([^";]+)"?', header)
        if not match:
            raise errors.BadRequest("The multipart Content-Type has no boundary.",
                                    code="invalid_multipart")
        return parse_multipart(self.raw_body, match.group(1).encode())


# Numbers a body may hold: what every metadata engine keeps exactly (SQLite's JSON text, read
# back through orjson, and DynamoDB's numbers) - a 64-bit integer or a finite float.
_INT_LIMIT = 2 ** 63


class _Unkept:
    """A number parsed from a body that no engine would keep as sent (NaN, Infinity, an
    integer past 64 bits, a float past a double): left in its place so that the walk after
    the parse names its field."""
    __slots__ = ("text", "why")

    def __init__(self, text: str, why: str):
        self.text, self.why = text, why


def _int_or_unkept(text: str):
    # More digits than any 64-bit integer: not converted (int() of thousands is slow).
    value = int(text) if len(text) <= 20 else None
    if value is None or not -_INT_LIMIT <= value < _INT_LIMIT:
        return _Unkept(text, "integers here are at most 64 bits")
    return value


def _float_or_unkept(text: str):
    value = float(text)
    return value if math.isfinite(value) else _Unkept(text, "larger than any number here")


def _constant_unkept(name: str):
    return _Unkept(name, "not a JSON value (send a number, or a string)")


def _refuse_unkept(value) -> None:
    """Raise for the first _Unkept in a parsed body, naming its field."""
    for current, where in _walk(value):
        if isinstance(current, _Unkept):
            shown = current.text if len(current.text) <= 40 else \
                f"{current.text[:20]}... ({len(current.text)} digits)"
            raise errors.BadRequest(
                f"{f'Field {where!r}' if where else 'A value'} is {shown}: {current.why}.",
                code="invalid_json", details={"field": where} if where else None)


def parse_json(raw: bytes, *, bounded_numbers: bool = True) -> dict:
    """A JSON object from a request body, within MAX_JSON_BYTES and MAX_JSON_DEPTH, with
    64-bit integers and finite floats only (`bounded_numbers`; a caller that checks its
    numbers' ranges itself may take any)."""
    if len(raw) > MAX_JSON_BYTES:
        raise errors.PayloadTooLarge(f"A JSON body is at most {MAX_JSON_BYTES} bytes.",
                                     code="body_too_large")
    too_deep = errors.BadRequest(f"The request body nests more than {MAX_JSON_DEPTH} levels "
                                 f"deep.", code="invalid_json")
    unkept = {"parse_int": _int_or_unkept, "parse_float": _float_or_unkept,
              "parse_constant": _constant_unkept} if bounded_numbers else {}
    try:
        value = json.loads(raw, object_pairs_hook=_object_once, **unkept)
    except _Repeated as exc:
        # Which of the two was meant cannot be told (a form field sent twice is refused too).
        raise errors.BadRequest(f"Field '{errors.shown(exc.name)}' appears more than once in "
                                f"one object; send it once.", code="invalid_json",
                                details={"field": errors.shown(exc.name)}) from None
    except RecursionError:
        # The C parser stops cleanly at the interpreter's recursion limit.
        raise too_deep from None
    except ValueError as exc:
        raise errors.BadRequest(f"The request body is not valid JSON: {exc}.",
                                code="invalid_json") from None
    if not isinstance(value, dict):
        raise errors.BadRequest("The request body must be a JSON object, e.g. "
                                '{"name": "value"}.', code="invalid_json")
    # Fewer brackets than the bound cannot nest deeper than it: only such bodies are walked.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    # UTF-8 cannot carry a lone surrogate: only a \uD800-\uDFFF escape can, so only bodies
    # with one are walked.
    if _SURROGATE_ESCAPE.search(raw):
        _check_text(value)
    # Only a body with a number out of bounds is walked (the parse marks each in place).
    if bounded_numbers and _MAYBE_UNKEPT.search(raw):
        _refuse_unkept(value)
    return value


class _Repeated(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _object_once(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose every name appears once (json.loads keeps the last of a repeated
    one)."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _Repeated(name)
            seen.add(name)
    return value


# What any _Unkept is parsed from: NaN, Infinity, 20 or more digits in a row, an exponent.
_MAYBE_UNKEPT = re.compile(rb"NaN|Infinity|[0-9]{19}|[eE][+-]?[0-9]{3}")


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _walk(value):
    """Every value in a parsed body with where it is ("a.b[2]"; "" for the body itself),
    iteratively (no recursion, whatever the nesting)."""
    stack = [(value, "")]
    while stack:
        current, where = stack.pop()
        yield current, where
        if isinstance(current, dict):
            stack.extend((child, f"{where}.{key}" if where else str(key))
                         for key, child in current.items())
        elif isinstance(current, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(current))


def _check_text(value) -> None:
    """Refuse a body holding text that is not Unicode (a lone surrogate), naming its field:
    nothing downstream (UTF-8 storage, hashing, tokens) can take it."""
    for current, where in _walk(value):
        if isinstance(current, dict):
            if not all(_encodable(key) for key in current):
                raise _not_text(f"A field name{f' in {where!r}' if where else ''}")
        elif isinstance(current, str) and not _encodable(current):
            raise _not_text(f"Field '{where}'")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_text(what: str) -> errors.BadRequest:
    return errors.BadRequest(f"{what} is not valid Unicode text: it holds a lone UTF-16 "
                             f"surrogate (\\uD800-\\uDFFF not in a pair).", code="invalid_text")


def _depth(value) -> int:
    """How deeply lists and objects nest in a parsed value (iteratively: no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, (dict, list)):
            deepest = max(deepest, depth)
            children = current.values() if isinstance(current, dict) else current
            stack.extend((child, depth + 1) for child in children)
    return deepest


def whole_number(raw: str, what: str, code: str) -> int:
    """ASCII digits only (int() also takes digits such as '³' or '٣', '_' and spaces)."""
    digits = raw[1:] if isinstance(raw, str) and raw.startswith("-") else raw
    if not isinstance(digits, str) or not (digits.isascii() and digits.isdigit()):
        raise errors.BadRequest(f"{what} must be a whole number, not {raw!r}.", code=code)
    if len(digits) > 18:
        raise errors.BadRequest(f"{what} must be a whole number of at most 18 digits, not "
                                f"{errors.shown(raw)}.", code=code)
    return int(raw)


_TYPE_NAMES = {str: "a string", int: "a whole number", bool: "true or false", dict: "an object",
               list: "a list", float: "a number"}


def check_type(name: str, value: Any, kind: type | tuple) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if int in kinds and isinstance(value, float) and value.is_integer():
        value = int(value)          # JSON has one number type: 1024.0 is the integer 1024
    ok = any(isinstance(value, k) and not (k is int and isinstance(value, bool)) for k in kinds)
    if not ok:
        # A whole number is a number too: (int, float) reads "a number", not "a whole number
        # or a number".
        shown = [k for k in kinds if not (k is int and float in kinds)]
        wanted = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in shown)
        raise errors.BadRequest(f"Field '{name}' must be {wanted}.", code="invalid_field",
                                details={"field": name})
    return value


def parse_multipart(body: bytes, boundary: bytes) -> list[Part]:
    """Split a multipart/form-data body exactly on its delimiters (RFC 7578), bytes untouched."""
    delimiter = b"--" + boundary
    if not body.startswith(delimiter):
        body = b"\r\n" + body
        start = body.find(b"\r\n" + delimiter)
        if start < 0:
            raise errors.BadRequest("The multipart body has no part delimited by its boundary.",
                                    code="invalid_multipart")
        body = body[start + 2:]
    segments = (b"\r\n" + body).split(b"\r\n" + delimiter)
    parts: list[Part] = []
    closed = False
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            closed = True
            break
        head_end = segment.find(b"\r\n\r\n")
        if head_end < 0:
            raise errors.BadRequest("A multipart part has no header block.",
                                    code="invalid_multipart")
        headers = _part_headers(segment[:head_end].lstrip(b" \t").removeprefix(b"\r\n"))
        disposition = headers.get("content-disposition", "")
        parts.append(Part(
            name=_disposition_param(disposition, "name"),
            filename=_disposition_param(disposition, "filename"),
            content_type=headers.get("content-type", "application/octet-stream"),
            data=segment[head_end + 4:],
        ))
    if not closed:
        raise errors.BadRequest("The multipart body ends before its closing boundary; the "
                                "upload may have been cut off.", code="invalid_multipart")
    return parts


def _part_headers(block: bytes) -> dict[str, str]:
    headers = {}
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.BadRequest("A multipart part's headers (its field name or filename) "
                                "must be UTF-8.", code="invalid_multipart") from None
    for line in text.split("\r\n"):
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return headers


# What browsers, curl (7.81+) and urllib3 2 percent-encode in a quoted name or filename (the
# WHATWG HTML standard): nothing else, not even '%' itself.
_WHATWG_ESCAPES = {"%22": '"', "%0A": "\n", "%0D": "\r", "%0a": "\n", "%0d": "\r"}
_WHATWG_ESCAPED = re.compile("|".join(_WHATWG_ESCAPES))


def as_form_filename(name: str) -> str:
    """A name as a part's quoted `filename="..."` brings it here (what a browser's form
    escapes, read back): a client naming a part's file in another field (a batch's `mtimes`)
    writes it as it knows it, and the part's name may have been read back otherwise."""
    return _WHATWG_ESCAPED.sub(lambda m: _WHATWG_ESCAPES[m.group(0)], name)


def _disposition_param(disposition: str, param: str) -> str | None:
    """A parameter of a part's Content-Disposition. `param*` (RFC 5987: UTF-8''<percent-
    encoded>, exact for any name; the CLI sends it) wins over `param`. A quoted `param` is
    read as browsers write it: `\"` and the WHATWG escapes %22, %0A and %0D stand for the
    characters (so a literal "%22" in a name sent that way cannot be told apart; send
    `filename*` to keep it)."""
    extended = re.search(rf"(?:^|;)\s*{param}\*\s*=\s*([^;\s]+)", disposition)
    if extended:
        charset, _, rest = extended.group(1).partition("'")
        _, _, encoded = rest.partition("'")
        if charset.lower() != "utf-8":
            raise errors.BadRequest(f"A multipart part's {param}* must be UTF-8''<percent-"
                                    f"encoded>.", code="invalid_multipart")
        try:
            return unquote_to_bytes(encoded).decode("utf-8")
        except UnicodeDecodeError:
            raise errors.BadRequest(f"A multipart part's {param}* is not UTF-8 once decoded.",
                                    code="invalid_multipart") from None
    match = re.search(rf'(?:^|;)\s*{param}="((?:[^"\\]|\\.)*)"', disposition)
    if match:
        return as_form_filename(match.group(1).replace('\\"', '"'))
    match = re.search(rf"(?:^|;)\s*{param}=([^;\s]+)", disposition)
    return match.group(1) if match else None

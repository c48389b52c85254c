"""Opcodes of the restricted unpickler that push one scalar, or touch the memo.

Each checks a length against the budget before it reads or decodes anything:
a 10**6-digit text INT or a 3 GB BINBYTES header is refused at its first bytes.
"""

from __future__ import annotations

import codecs
import pickle
import re
import struct

from .allowlist import resolve
from .budget import BudgetExceededError
from .machine import (
    IMMUTABLE,
    MISSING,
    TEXT_NODE,
    Machine,
    Node,
    damaged,
    get,
    push_text,
    put,
    truncated,
)

__all__ = ["LEAF_OPCODES"]

_I32, _U32, _U64 = (struct.Struct(f).unpack_from for f in ("<i", "<I", "<Q"))
_U16, _F64 = struct.Struct("<H").unpack_from, struct.Struct(">d").unpack_from
_NAME_LINE = 512  # characters of a GLOBAL module or name line: no allowlisted name comes close
_NUMBER_LINE = 64  # characters of a text FLOAT or memo index
_NEWLINE = re.compile(b"\n")


def _check_length(size: int, limit: int) -> None:
    if size > limit:
        raise BudgetExceededError("a string longer than", limit, size, " bytes")


def _end_of(m: Machine, pos: int, size: int, limit: int) -> int:
    """Where a value of ``size`` bytes starting at ``pos`` ends, checked against ``limit`` first."""
    _check_length(size, limit)
    if pos + size > m.end:
        raise truncated()
    return pos + size


def _newline(data, pos: int, stop: int) -> int:
    """The offset of the first newline in ``data[pos:stop]``, or -1, found without copying.

    Each line is scanned once, from its own start: a copy of the rest of the data per line
    would make a pickle of many short lines cost its size squared. A memoryview (of a
    memory-mapped file) has no ``find``; a regular expression scans its buffer in place.
    """
    if type(data) is memoryview:
        found = _NEWLINE.search(data, pos, stop)
        return -1 if found is None else found.start()
    return data.find(b"\n", pos, stop)


def _line(m: Machine, pos: int, limit: int, too_long) -> tuple[bytes, int]:
    """The text up to the next newline (at most ``limit`` bytes) and the position after it.

    A line costs 1 work on top of its opcode's: parsing text is a few times slower than
    reading a binary argument, and torch never writes text opcodes.
    """
    m.work += 1
    stop = min(pos + limit + 1, m.end)
    found = _newline(m.data, pos, stop)
    if found < 0:
        raise truncated() if stop >= m.end else too_long()
    return bytes(m.data[pos:found]), found + 1


def _int_too_long(m: Machine):
    return lambda: BudgetExceededError("an integer with more digits than", m.budget.max_int_digits)


def _text_int(line: bytes) -> int:
    try:
        return int(line, 0)
    except ValueError:
        raise damaged("a text INT or LONG that is not a number") from None


def _binint(m, pos):
    m.stack.append(_I32(m.data, pos)[0])
    return pos + 4


def _binint1(m, pos):
    m.stack.append(m.data[pos])
    return pos + 1


def _binint2(m, pos):
    m.stack.append(_U16(m.data, pos)[0])
    return pos + 2


def _long_bytes(m: Machine, pos: int, size: int) -> int:
    if size < 0:
        raise damaged("a LONG4 of negative length")
    if size > m.budget.max_int_bytes:
        raise BudgetExceededError("an integer longer than", m.budget.max_int_bytes, size, " bytes")
    end = _end_of(m, pos, size, size)
    m.stack.append(int.from_bytes(m.data[pos:end], "little", signed=True))
    return end


def _long1(m, pos):
    return _long_bytes(m, pos + 1, m.data[pos])


def _long4(m, pos):
    return _long_bytes(m, pos + 4, _I32(m.data, pos)[0])


def _binfloat(m, pos):
    m.stack.append(_F64(m.data, pos)[0])
    return pos + 8


def _unicode_at(m: Machine, pos: int, size: int) -> int:
    end = pos + size
    if size > m.budget.max_str_bytes or end > m.end:
        _end_of(m, pos, size, m.budget.max_str_bytes)
    try:
        text = str(m.data[pos:end], "utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise damaged(f"a string at byte {pos} that is not UTF-8") from None
    m.stack.append(text if size < TEXT_NODE else Node(text, 1 + (size >> 6), 0, IMMUTABLE))
    return end


def _bytes_at(m: Machine, pos: int, size: int) -> int:
    end = _end_of(m, pos, size, m.budget.max_str_bytes)
    push_text(m, bytes(m.data[pos:end]), size)
    return end


def _py2_string_at(m: Machine, pos: int, size: int) -> int:
    """A Python 2 ``str``: decoded as UTF-8, as ``torch.load`` does by default."""
    if size < 0:
        raise damaged("a BINSTRING of negative length")
    end = _end_of(m, pos, size, m.budget.max_str_bytes)
    try:
        push_text(m, str(m.data[pos:end], "utf-8"), size)
    except UnicodeDecodeError:
        raise damaged(f"a Python 2 string at byte {pos} that is not UTF-8") from None
    return end


def _text_int_op(m, pos):
    line, pos = _line(m, pos, m.budget.max_int_digits + 1, _int_too_long(m))
    m.stack.append(line == b"01" if line in (b"00", b"01") else _text_int(line))
    return pos


def _text_long_op(m, pos):
    line, pos = _line(m, pos, m.budget.max_int_digits + 2, _int_too_long(m))
    m.stack.append(_text_int(line[:-1] if line.endswith(b"L") else line))
    return pos


def _text_float_op(m, pos):
    line, pos = _line(m, pos, _NUMBER_LINE, lambda: damaged("a text FLOAT longer than 64 characters"))
    try:
        m.stack.append(float(line))
    except ValueError:
        raise damaged("a text FLOAT that is not a number") from None
    return pos


def _quoted_text_op(m, pos):
    """STRING: a quoted, backslash-escaped Python 2 str (protocol 0)."""
    limit = m.budget.max_str_bytes
    line, pos = _line(m, pos, 4 * limit + 2, lambda: BudgetExceededError("a string longer than", limit))
    if not (len(line) >= 2 and line[:1] == line[-1:] and line[:1] in (b"'", b'"')):
        raise damaged("a STRING that is not quoted")
    try:
        text = str(codecs.escape_decode(line[1:-1])[0], "utf-8")
    except (ValueError, UnicodeDecodeError):
        raise damaged("a STRING with broken escapes") from None
    _check_length(len(text), limit)
    push_text(m, text, len(text))
    return pos


def _raw_unicode_op(m, pos):
    """UNICODE: raw-unicode-escape text up to a newline (protocol 0)."""
    limit = m.budget.max_str_bytes
    line, pos = _line(m, pos, 4 * limit, lambda: BudgetExceededError("a string longer than", limit))
    try:
        text = str(line, "raw-unicode-escape")
    except UnicodeDecodeError:
        raise damaged("a UNICODE string with broken escapes") from None
    _check_length(len(text), limit)
    push_text(m, text, len(text))
    return pos


def _memo_index(m: Machine, pos: int) -> tuple[int, int]:
    line, pos = _line(m, pos, _NUMBER_LINE, lambda: damaged("a memo index longer than 64 characters"))
    return _text_int(line), pos


def _text_get(m, pos):
    index, pos = _memo_index(m, pos)
    get(m, index)
    return pos


def _text_put(m, pos):
    index, pos = _memo_index(m, pos)
    put(m, index)
    return pos


def _global(m, pos):
    too_long = lambda: damaged(f"a GLOBAL name longer than {_NAME_LINE} characters")  # noqa: E731
    module, pos = _line(m, pos, _NAME_LINE, too_long)
    name, pos = _line(m, pos, _NAME_LINE, too_long)
    try:
        m.stack.append(resolve(module.decode("utf-8"), name.decode("utf-8")))
    except UnicodeDecodeError:
        raise damaged("a GLOBAL name that is not UTF-8") from None
    return pos


def _sized_op(reader, length_size: int):
    unpack = {1: None, 4: _U32, 8: _U64}[length_size]

    def op(m, pos):
        size = m.data[pos] if unpack is None else unpack(m.data, pos)[0]
        return reader(m, pos + length_size, size)

    return op


# The binary memo opcodes are a third of a checkpoint's opcodes: they skip the helpers
# (``put`` with its work charge inlined; the dispatch loop checks the total).
def _binput(m, pos):
    m.memo[m.data[pos]] = m.stack[-1]
    m.work += 1
    return pos + 1


def _long_binput(m, pos):
    m.memo[_U32(m.data, pos)[0]] = m.stack[-1]
    m.work += 1
    return pos + 4


def _binget(m, pos):
    item = m.memo.get(m.data[pos], MISSING)
    if type(item) is Node or item is MISSING:
        return _get_slowly(m, pos, m.data[pos], 1)
    m.stack.append(item)
    return pos + 1


def _long_binget(m, pos):
    index = _U32(m.data, pos)[0]
    item = m.memo.get(index, MISSING)
    if type(item) is Node or item is MISSING:
        return _get_slowly(m, pos, index, 4)
    m.stack.append(item)
    return pos + 4


def _get_slowly(m: Machine, pos: int, index: int, width: int) -> int:
    get(m, index)
    return pos + width


def _memoize(m, pos):
    put(m, len(m.memo))
    return pos


LEAF_OPCODES = {
    pickle.BININT: _binint,
    pickle.BININT1: _binint1,
    pickle.BININT2: _binint2,
    pickle.LONG1: _long1,
    pickle.LONG4: _long4,
    pickle.BINFLOAT: _binfloat,
    pickle.BINUNICODE: _sized_op(_unicode_at, 4),
    pickle.SHORT_BINUNICODE: _sized_op(_unicode_at, 1),
    pickle.BINUNICODE8: _sized_op(_unicode_at, 8),
    pickle.BINBYTES: _sized_op(_bytes_at, 4),
    pickle.SHORT_BINBYTES: _sized_op(_bytes_at, 1),
    pickle.BINBYTES8: _sized_op(_bytes_at, 8),
    pickle.BINSTRING: lambda m, pos: _py2_string_at(m, pos + 4, _I32(m.data, pos)[0]),
    pickle.SHORT_BINSTRING: _sized_op(_py2_string_at, 1),
    pickle.INT: _text_int_op,
    pickle.LONG: _text_long_op,
    pickle.FLOAT: _text_float_op,
    pickle.STRING: _quoted_text_op,
    pickle.UNICODE: _raw_unicode_op,
    pickle.GET: _text_get,
    pickle.PUT: _text_put,
    pickle.GLOBAL: _global,
    pickle.BINGET: _binget,
    pickle.LONG_BINGET: _long_binget,
    pickle.BINPUT: _binput,
    pickle.LONG_BINPUT: _long_binput,
    pickle.MEMOIZE: _memoize,
}

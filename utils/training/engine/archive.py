"""The zip archive that ``torch.save`` writes, read with bounds: entries, members, the JSON record.

``torch.save`` writes a zip file whose members all live under one top folder (the
"archive root"): ``<root>/data.pkl`` first, then ``<root>/data/0``, ... The engine appends
one small JSON member, ``<root>/checkpoint_meta.json``, as the *last* entry.

The listing must not depend on how many tensors a file holds, so :func:`end_record`,
:func:`first_entry` and :func:`last_entry` read a few kilobytes at the end of the file
whatever its size (``zipfile.ZipFile`` would parse every directory entry first).
Loading needs every entry: :func:`read_entries` parses the central directory with a cap
on its size and entry count. :func:`read_member` decompresses with a cap, so a 2 KB
member that inflates to gigabytes is refused after the cap, not read to the end.

Every function raises :class:`ArchiveError` (a ValueError) for damaged or crafted
bytes; callers turn it into a CheckpointError naming the file.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "ArchiveError",
    "EndRecord",
    "NoEndRecordError",
    "ZipEntry",
    "append_member",
    "archive_root",
    "end_record",
    "first_entry",
    "last_entry",
    "member_data_offset",
    "read_entries",
    "read_member",
]

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record (22 bytes)
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory file header (46 bytes)
_LOCAL = struct.Struct("<4s5H3L2H")  # local file header (30 bytes)
_MAX_COMMENT = 0xFFFF
_MARK32 = 0xFFFFFFFF
_MARK16 = 0xFFFF
# A last entry larger than this is not ours (our record's entry is under 200 bytes).
_LAST_ENTRY_WINDOW = 4096
# torch writes a few entries per tensor; 200,000 covers models far beyond GPT-2 XL with
# optimizer state, and bounds the work a crafted directory can ask for.
MAX_ENTRIES = 200_000
MAX_DIRECTORY_BYTES = 64 << 20


class ArchiveError(ValueError):
    """The zip structure is damaged, crafted, or beyond a bound."""


class NoEndRecordError(ArchiveError):
    """The file has no zip end record: empty, truncated, or not a zip file."""


@dataclass(frozen=True)
class EndRecord:
    """Where the central directory is, and how many entries it holds."""

    entries: int
    directory_offset: int
    directory_size: int


@dataclass(frozen=True)
class ZipEntry:
    """One member as the central directory describes it (no data read)."""

    name: str
    method: int  # zipfile.ZIP_STORED, ZIP_DEFLATED, ...
    crc: int
    compressed_size: int
    size: int
    header_offset: int  # where the member's local header starts


def archive_root(names: list[str]) -> str:
    """The top folder of a torch archive: the first path component of its first member."""
    return names[0].split("/", 1)[0] if names else ""


def append_member(file: BinaryIO, name: str, data: bytes) -> str:
    """Append ``<root>/<name>`` (stored, uncompressed) to the torch archive open in ``file``.

    Returns:
        The full member name written.
    """
    file.seek(0)
    with zipfile.ZipFile(file, mode="a") as archive:
        member = f"{archive_root(archive.namelist())}/{name}"
        archive.writestr(member, data)
    return member


def end_record(file: BinaryIO) -> EndRecord:
    """The end record (zip64-aware), found within the longest comment of the file's end.

    Raises:
        NoEndRecordError: none (an empty, cut-short or non-zip file).
        ArchiveError: the records contradict each other or the file.
    """
    file_size = file.seek(0, 2)
    tail_start = max(0, file_size - (_EOCD.size + _MAX_COMMENT))
    file.seek(tail_start)
    tail = file.read()
    position = tail.rfind(b"PK\x05\x06")
    if position < 0 or len(tail) - position < _EOCD.size:
        raise NoEndRecordError("no zip end record")
    fields = _EOCD.unpack_from(tail, position)
    if position + _EOCD.size + fields[7] > len(tail):  # its comment runs past the end: cut short
        raise NoEndRecordError("the zip end record is cut short")
    at = tail_start + position
    entries, size, offset = fields[4], fields[5], fields[6]
    zip64 = _zip64_record(file, at)
    if zip64 is not None:
        at, entries64, offset64, size64 = zip64
        if _MARK32 in (size, offset) or entries == _MARK16:
            entries, offset, size = entries64, offset64, size64
    if offset + size != at:  # data prepended or appended, or a crafted offset
        raise ArchiveError("the central directory is not where the end record says")
    if entries > MAX_ENTRIES or size > MAX_DIRECTORY_BYTES:
        raise ArchiveError(
            f"refused: the zip directory holds {entries:,} entries in {size:,} bytes "
            f"(at most {MAX_ENTRIES:,} entries and {MAX_DIRECTORY_BYTES >> 20} MiB are read)"
        )
    return EndRecord(entries, offset, size)


def _zip64_record(file: BinaryIO, eocd_at: int) -> tuple[int, int, int, int] | None:
    """(record offset, entries, directory offset, directory size) of a zip64 end record, if any."""
    if eocd_at < _EOCD64_LOCATOR.size:
        return None
    file.seek(eocd_at - _EOCD64_LOCATOR.size)
    locator = _EOCD64_LOCATOR.unpack(_read_exactly(file, _EOCD64_LOCATOR.size))
    if locator[0] != b"PK\x06\x07":
        return None
    if locator[2] > eocd_at:
        raise ArchiveError("the zip64 end record lies past the end record")
    file.seek(locator[2])
    record = _EOCD64.unpack(_read_exactly(file, _EOCD64.size))
    if record[0] != b"PK\x06\x06":
        raise ArchiveError("zip64 end record missing")
    return locator[2], record[7], record[9], record[8]


def _read_exactly(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise ArchiveError("the archive ends early")
    return data


def first_entry(file: BinaryIO, end: EndRecord) -> ZipEntry | None:
    """The directory's first entry (torch writes ``<root>/data.pkl`` there); None when empty."""
    if end.entries == 0:
        return None
    file.seek(end.directory_offset)
    block = file.read(min(end.directory_size, _CENTRAL.size + 3 * _MAX_COMMENT))
    entry, _ = _parse_entry(block, 0)
    return entry


def last_entry(file: BinaryIO, end: EndRecord) -> ZipEntry | None:
    """The directory's last entry, read from its end; None when it is not found in the last 4 KB."""
    window = min(end.directory_size, _LAST_ENTRY_WINDOW)
    file.seek(end.directory_offset + end.directory_size - window)
    block = _read_exactly(file, window)
    position = block.rfind(b"PK\x01\x02")
    while position >= 0:
        if len(block) - position >= _CENTRAL.size:
            fields = _CENTRAL.unpack_from(block, position)
            if position + _CENTRAL.size + sum(fields[10:13]) == len(block):
                return _parse_entry(block, position)[0]
        position = block.rfind(b"PK\x01\x02", 0, position)
    return None


def read_entries(file: BinaryIO, end: EndRecord) -> dict[str, ZipEntry]:
    """Every entry of the central directory, by name.

    Raises:
        ArchiveError: a damaged directory, a duplicate name, or a count that disagrees with
            the end record.
    """
    file.seek(end.directory_offset)
    block = _read_exactly(file, end.directory_size)
    entries: dict[str, ZipEntry] = {}
    position = 0
    while position < len(block):
        entry, position = _parse_entry(block, position)
        if entry.name in entries:
            raise ArchiveError(f"two members are named {entry.name!r}")
        entries[entry.name] = entry
        if len(entries) > end.entries:
            break
    if len(entries) != end.entries:
        raise ArchiveError(f"the directory lists {len(entries):,} entries, the end record {end.entries:,}")
    return entries


def _parse_entry(block: bytes, position: int) -> tuple[ZipEntry, int]:
    """The entry at ``position`` of a directory block, and where the next one starts."""
    if len(block) - position < _CENTRAL.size:
        raise ArchiveError("a directory entry is cut short")
    fields = _CENTRAL.unpack_from(block, position)
    if fields[0] != b"PK\x01\x02":
        raise ArchiveError("a directory entry has no signature")
    name_len, extra_len, comment_len = fields[10:13]
    start = position + _CENTRAL.size
    end = start + name_len + extra_len + comment_len
    if end > len(block):
        raise ArchiveError("a directory entry runs past the directory")
    name = block[start : start + name_len].decode("utf-8", "surrogateescape")
    extra = block[start + name_len : start + name_len + extra_len]
    size, csize, offset = _apply_zip64_extra(extra, fields[9], fields[8], fields[16])
    if fields[4] == zipfile.ZIP_STORED and size != csize:  # else a reader trusting `size` reads past it
        raise ArchiveError(f"stored member {name!r} claims {size:,} bytes but holds {csize:,}")
    return ZipEntry(name, fields[4], fields[7], csize, size, offset), end


def _apply_zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Replace 32-bit placeholders by the 64-bit values of the zip64 extra field."""
    while len(extra) >= 4:
        tag, size = struct.unpack_from("<2H", extra)
        if tag == 0x0001:
            values = list(struct.unpack_from(f"<{min(size, len(extra) - 4) // 8}Q", extra, 4))
            try:
                if usize == _MARK32:
                    usize = values.pop(0)
                if csize == _MARK32:
                    csize = values.pop(0)
                if offset == _MARK32:
                    offset = values.pop(0)
            except IndexError:
                raise ArchiveError("a zip64 extra field is too short") from None
        extra = extra[4 + size :]
    return usize, csize, offset


def member_data_offset(file: BinaryIO, entry: ZipEntry, limit: int) -> int:
    """Where ``entry``'s bytes start, from its local header; they must end before ``limit``.

    Args:
        limit: the central directory's offset (no member's data may run into it).

    Raises:
        ArchiveError: no local header there, or the data would run past ``limit``.
    """
    file.seek(entry.header_offset)
    local = _LOCAL.unpack(_read_exactly(file, _LOCAL.size))
    if local[0] != b"PK\x03\x04":
        raise ArchiveError(f"member {entry.name!r} has no local header")
    flags, local_crc, local_csize, local_size = local[2], local[6], local[7], local[8]
    sizes_known = not flags & 0x08 and _MARK32 not in (
        local_csize,
        local_size,
    )  # no data descriptor, no zip64
    if sizes_known and (local_csize, local_size, local_crc) != (entry.compressed_size, entry.size, entry.crc):
        raise ArchiveError(f"member {entry.name!r}'s local header disagrees with the directory")
    start = entry.header_offset + _LOCAL.size + local[9] + local[10]
    if start + entry.compressed_size > limit:
        raise ArchiveError(f"member {entry.name!r} runs past the end of the data")
    return start


def read_member(file: BinaryIO, entry: ZipEntry, limit: int, max_bytes: int) -> bytes:
    """The member's bytes, decompressed with a cap and checked against its CRC-32.

    Args:
        limit: the central directory's offset (see :func:`member_data_offset`).
        max_bytes: refuse a member that is (or inflates to) more than this.

    Raises:
        ArchiveError: over ``max_bytes``, an unsupported compression, or damaged bytes.
    """
    if entry.size > max_bytes or (entry.method == zipfile.ZIP_STORED and entry.compressed_size > max_bytes):
        raise ArchiveError(
            f"refused: member {entry.name!r} holds {entry.size:,} bytes (at most {max_bytes:,})"
        )
    file.seek(member_data_offset(file, entry, limit))
    raw = _read_exactly(file, entry.compressed_size)
    if entry.method == zipfile.ZIP_STORED:
        data = raw
    elif entry.method == zipfile.ZIP_DEFLATED:
        data = _inflate(raw, entry.name, max_bytes)
    else:
        raise ArchiveError(
            f"member {entry.name!r} is compressed with method {entry.method} (torch.save stores members "
            "uncompressed; only deflate is also read)"
        )
    if len(data) != entry.size or zlib.crc32(data) != entry.crc:
        raise ArchiveError(f"member {entry.name!r} fails its size or CRC-32 check")
    return data


def _inflate(raw: bytes, name: str, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(-15)
    try:
        data = inflater.decompress(raw, max_bytes + 1)
    except zlib.error as error:
        raise ArchiveError(f"member {name!r} cannot be decompressed: {error}") from None
    if len(data) > max_bytes:
        raise ArchiveError(f"refused: member {name!r} inflates to more than {max_bytes:,} bytes")
    return data

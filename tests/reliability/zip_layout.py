"""Where to cut a torch checkpoint: byte offsets of the places in its zip layout that matter.

A save killed part-way leaves a prefix of the file. ``truncation_offsets`` names 16 places
where a cut is most likely to confuse a reader (inside the zip magic, the first local
header, ``data.pkl``, the tensors, the JSON record, the central directory and the end
records) and 32 points spread evenly over the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from utils.training.engine.format import METADATA_RECORD

__all__ = ["TRUNCATION_NAMES", "truncation_offsets"]

# Fractions of the file size where a save may have been cut (32 evenly spread points).
_FRACTIONS = tuple(round((i + 0.5) / 32, 4) for i in range(32))
# Places in the zip layout where a cut is most likely to confuse a reader.
_LANDMARKS = (
    "zip-magic-2",
    "local-header-10",
    "local-header-29",
    "data-pkl-start",
    "data-pkl-middle",
    "data-pkl-end-1",
    "first-tensor-start",
    "largest-tensor-middle",
    "last-tensor-end-1",
    "meta-record-middle",
    "central-directory-start",
    "central-directory-middle",
    "zip64-end-record",
    "end-of-central-directory-start",
    "end-of-central-directory-middle",
    "last-byte-missing",
)
TRUNCATION_NAMES = tuple(f"truncated-{n}" for n in _LANDMARKS) + tuple(
    f"truncated-at-{f:.4f}" for f in _FRACTIONS
)


def _landmark_offsets(path: Path) -> dict[str, int]:
    """Byte offsets of the named places in a torch zip archive."""
    data = path.read_bytes()
    size = len(data)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    by_name = {info.filename.split("/", 1)[1]: info for info in infos}

    def start(info: zipfile.ZipInfo) -> int:  # first byte of the member's data (after its local header)
        at = info.header_offset
        name_len = int.from_bytes(data[at + 26 : at + 28], "little")
        extra_len = int.from_bytes(data[at + 28 : at + 30], "little")
        return at + 30 + name_len + extra_len

    pkl = by_name["data.pkl"]
    tensors = [info for name, info in by_name.items() if name.startswith("data/")]
    largest = max(tensors, key=lambda info: info.compress_size)
    last = max(tensors, key=lambda info: info.header_offset)
    meta = by_name[METADATA_RECORD]
    cd_start = data.find(b"PK\x01\x02")
    eocd = data.rfind(b"PK\x05\x06")
    zip64 = data.rfind(b"PK\x06\x06")
    return {
        "zip-magic-2": 2,
        "local-header-10": 10,
        "local-header-29": 29,
        "data-pkl-start": start(pkl) + 1,
        "data-pkl-middle": start(pkl) + pkl.compress_size // 2,
        "data-pkl-end-1": start(pkl) + pkl.compress_size - 1,
        "first-tensor-start": start(min(tensors, key=lambda info: info.header_offset)) + 1,
        "largest-tensor-middle": start(largest) + largest.compress_size // 2,
        "last-tensor-end-1": start(last) + last.compress_size - 1,
        "meta-record-middle": start(meta) + meta.compress_size // 2,
        "central-directory-start": cd_start + 1,
        "central-directory-middle": (cd_start + (zip64 if zip64 > 0 else eocd)) // 2,
        "zip64-end-record": (zip64 + 10) if zip64 > 0 else eocd - 10,
        "end-of-central-directory-start": eocd + 1,
        "end-of-central-directory-middle": eocd + 11,
        "last-byte-missing": size - 1,
    }


def truncation_offsets(base: Path) -> dict[str, int]:
    """Case name -> the byte count the truncated copy keeps."""
    size = base.stat().st_size
    offsets = {f"truncated-{name}": at for name, at in _landmark_offsets(base).items()}
    offsets.update({f"truncated-at-{f:.4f}": max(1, int(size * f)) for f in _FRACTIONS})
    return offsets

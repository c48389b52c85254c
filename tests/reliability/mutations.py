"""Byte-level and structured mutations of a real checkpoint file, for the hypothesis fuzz tests.

Everything here is a pure function of its arguments, so hypothesis can shrink a failing
example to the smallest mutation that breaks a reader.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from utils.model import GPT, GPTConfig
from utils.training import build_optimizer
from utils.training.engine.archive import append_member
from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.format import METADATA_RECORD

__all__ = [
    "MICRO",
    "Base",
    "apply_byte_ops",
    "make_base",
    "micro_model",
    "rewrite_member",
    "with_record",
]

# A real GPT, small enough that most bytes of its checkpoint are structure, not tensor data.
MICRO = GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.0)


def micro_model(seed: int = 1) -> GPT:
    torch.manual_seed(seed)
    return GPT(MICRO)


@dataclass(frozen=True)
class Base:
    """The checkpoint every mutation starts from."""

    data: bytes = field(repr=False)  # the file save_checkpoint wrote
    checkpoint: dict = field(repr=False)  # torch.load of it
    record: dict = field(repr=False)  # its JSON metadata record
    landmarks: tuple[int, ...] = field(repr=False)  # offsets of zip headers, data.pkl and the JSON record


def make_base(folder: Path) -> Base:
    """save_checkpoint of the micro GPT with AdamW state, history and config."""
    model = micro_model(seed=0)
    optimizer = build_optimizer(model, 1e-3, 0.1)  # as the training cell builds it, so resume fits
    idx = torch.randint(0, MICRO.vocab_size, (2, 8))
    model(idx, idx)[1].backward()
    optimizer.step()
    metrics = {"train_loss": 3.1, "val_loss": 3.2, "learning_rate": 1e-3}
    path = save_checkpoint(
        folder, model, optimizer, epoch=1, global_step=8, metrics=metrics,
        history=[{"epoch": 0, "global_step": 4, **metrics}], config={"model": MICRO.to_dict()}, retention=None,
    )  # fmt: skip
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        record = json.loads(archive.read(infos[-1]))
    landmarks = sorted({info.header_offset for info in infos} | _tail_records(data))
    checkpoint = torch.load(path, weights_only=True)
    return Base(data, checkpoint, record, tuple(landmarks))


def _tail_records(data: bytes) -> set[int]:
    """Offsets of the central directory entries and end records."""
    found = set()
    for magic in (b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"):
        at = data.find(magic)
        while at >= 0:
            found.add(at)
            at = data.find(magic, at + 1)
    return found


def apply_byte_ops(data: bytes, ops: list[tuple]) -> bytes:
    """Apply ("flip", pos, bit) | ("set", pos, byte) | ("truncate", n) | ("insert", pos, bytes)
    | ("delete", pos, n) | ("duplicate", start, n, dest) in order; positions wrap around the length."""
    buffer = bytearray(data)
    for op in ops:
        size = max(1, len(buffer))
        kind = op[0]
        if kind == "flip" and buffer:
            buffer[op[1] % size] ^= 1 << op[2]
        elif kind == "set" and buffer:
            buffer[op[1] % size] = op[2]
        elif kind == "truncate":
            del buffer[op[1] % size :]
        elif kind == "insert":
            buffer[op[1] % size : op[1] % size] = op[2]
        elif kind == "delete":
            del buffer[op[1] % size : op[1] % size + op[2]]
        elif kind == "duplicate":
            start = op[1] % size
            chunk = bytes(buffer[start : start + op[2]])
            buffer[op[3] % size : op[3] % size] = chunk
    return bytes(buffer)


def with_record(obj, record: bytes | None) -> bytes:
    """``torch.save(obj)`` bytes, plus ``record`` as the JSON member (raw bytes), when given."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    if record is not None:
        append_member(buffer, METADATA_RECORD, record)
    return buffer.getvalue()


def rewrite_member(data: bytes, suffix: str, content: bytes) -> bytes:
    """The archive with member ``<root>/<suffix>`` replaced by ``content`` (CRCs made valid).

    Same length: patched in place (tensor alignment kept). Other lengths: rebuilt with zipfile.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        target = next(info for info in infos if info.filename.endswith("/" + suffix))
        if len(content) == target.file_size and target.compress_type == zipfile.ZIP_STORED:
            return _patch_in_place(data, target, content)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as rebuilt:
            for info in infos:
                rebuilt.writestr(info.filename, content if info is target else archive.read(info))
    return out.getvalue()


def _patch_in_place(data: bytes, info: zipfile.ZipInfo, content: bytes) -> bytes:
    buffer = bytearray(data)
    at = info.header_offset
    name_len = int.from_bytes(data[at + 26 : at + 28], "little")
    start = at + 30 + name_len + int.from_bytes(data[at + 28 : at + 30], "little")
    buffer[start : start + len(content)] = content
    crc = zlib.crc32(content).to_bytes(4, "little")
    if int.from_bytes(data[at + 6 : at + 8], "little") & 0x08:  # sizes and CRC in a data descriptor
        end = start + len(content)
        end += 4 if data[end : end + 4] == b"PK\x07\x08" else 0
        buffer[end : end + 4] = crc
    else:
        buffer[at + 14 : at + 18] = crc  # local header
    name = info.filename.encode()
    entry = data.find(b"PK\x01\x02")
    while entry >= 0 and data[entry + 46 : entry + 46 + len(name)] != name:
        entry = data.find(b"PK\x01\x02", entry + 1)
    buffer[entry + 16 : entry + 20] = crc  # central directory entry
    return bytes(buffer)

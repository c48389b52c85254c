"""Tiny hand-made pickles for the restricted unpickler's tests: opcodes and torch-like records."""

from __future__ import annotations

import collections
import io
import pickle
import struct

import torch

P2 = pickle.PROTO + b"\x02"
P4 = pickle.PROTO + b"\x04"


def text(value: str) -> bytes:
    """SHORT_BINUNICODE (or BINUNICODE when longer than 255 bytes)."""
    data = value.encode("utf-8", "surrogatepass")
    if len(data) < 256:
        return pickle.SHORT_BINUNICODE + bytes([len(data)]) + data
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def put(index: int) -> bytes:
    return pickle.BINPUT + bytes([index]) if index < 256 else pickle.LONG_BINPUT + struct.pack("<I", index)


def get(index: int) -> bytes:
    return pickle.BINGET + bytes([index]) if index < 256 else pickle.LONG_BINGET + struct.pack("<I", index)


def small_int(value: int) -> bytes:
    return pickle.BININT1 + bytes([value])


def stack_global(module: str, name: str) -> bytes:
    return text(module) + text(name) + pickle.STACK_GLOBAL


def shared_list_bomb(levels: int) -> bytes:
    """``l[k] = [l[k-1], l[k-1]]``: 40 levels are 2**40 references in ~300 bytes."""
    parts = [P2, pickle.EMPTY_LIST, put(0)]
    for level in range(1, levels + 1):
        parts += [pickle.EMPTY_LIST, pickle.MARK, get(level - 1), get(level - 1), pickle.APPENDS, put(level)]
    return b"".join(parts) + pickle.STOP


def nested_lists(depth: int) -> bytes:
    """``[[[...]]]`` ``depth`` deep."""
    return P2 + pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1) + pickle.STOP


class FakeStorage:
    """Pickles as torch's persistent id for a FloatStorage of ``numel`` elements."""

    def __init__(self, numel: int, key: str = "0") -> None:
        self.numel, self.key = numel, key


class FakeTensor:
    """Pickles as ``torch._utils._rebuild_tensor_v2`` with fields of the test's choosing."""

    def __init__(self, size, stride, storage: FakeStorage, offset=0) -> None:
        self.size, self.stride, self.storage, self.offset = size, stride, storage, offset

    def __reduce__(self):
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        return (torch._utils._rebuild_tensor_v2, args)


class _TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def torch_like(obj) -> bytes:
    """``obj`` pickled the way torch.save pickles (protocol 2, storages as persistent ids)."""
    buffer = io.BytesIO()
    _TorchLikePickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()

"""Hostile checkpoint folders: each built small, each aimed at one way a crafted file hurt the engine.

Every builder writes one folder holding a genuine checkpoint (``good``) and the hostile
entry, and returns a :class:`HostileCase` saying which operation to run on it and what
must hold afterwards. ``hostile_child.py`` runs them in a child process with a time limit
per case and measures the memory each one adds.

Pickles are assembled from opcodes (``_Pickle``) where ``torch.save`` would never write
such bytes: a size tuple of strings, a BUILD on ``collections.Counter``, nesting a million
deep, a bytearray of three gigabytes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from utils.model import GPT, config_for_preset
from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.naming import checkpoint_filename

__all__ = ["BUILDERS", "HostileCase", "tiny_model"]

WHEN = dt.datetime(2025, 11, 22, 6, 0, 0)
RUN_ID = "genuine-run"  # the run the genuine checkpoints belong to, as the training loop stamps them


@dataclass(frozen=True)
class HostileCase:
    """One hostile folder: what to run on it and what must hold.

    operation: "list" (scan the folder), "save" (save_checkpoint into it: retention runs),
        "load" (load_model_weights of ``path``), "render" (load, then render the error panel).
    expect: for "list": the names that must be listed; the hostile entry must not be.
    reason: a regex the hostile entry's skip reason (or the load error) must match.
    """

    name: str
    folder: Path
    path: Path
    operation: str
    expect_listed: tuple[str, ...] = ()
    reason: str = ""
    loads: bool = False  # "load": the file loads (instead of being refused)


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(config_for_preset("tiny", dropout=0.0))


def _good(folder: Path, step: int = 10, val_loss: float = 2.0) -> Path:
    return save_checkpoint(
        folder, tiny_model(), None, epoch=0, global_step=step, retention=None,
        metrics={"train_loss": 2.5, "val_loss": val_loss, "learning_rate": 1e-3},
        when=WHEN + dt.timedelta(seconds=step), run_id=RUN_ID,
    )  # fmt: skip


class _Pickle:
    """A tiny protocol-2 pickle assembler (opcodes by name, as pickletools lists them)."""

    def __init__(self) -> None:
        self.data = bytearray(b"\x80\x02")

    def op(self, code: bytes, payload: bytes = b"") -> _Pickle:
        self.data += code + payload
        return self

    def glob(self, module: str, name: str) -> _Pickle:
        return self.op(b"c", f"{module}\n{name}\n".encode())

    def text(self, value: str) -> _Pickle:
        raw = value.encode("utf-8", "surrogatepass")
        return self.op(b"X", struct.pack("<I", len(raw)) + raw)

    def int1(self, value: int) -> _Pickle:
        return self.op(b"K", bytes([value]))

    def put(self, index: int) -> _Pickle:
        return self.op(b"r", struct.pack("<I", index))

    def get(self, index: int) -> _Pickle:
        return self.op(b"j", struct.pack("<I", index))

    def storage(self, key: str = "0", numel: int = 1) -> _Pickle:
        """torch's persistent id for a float storage: ('storage', FloatStorage, key, 'cpu', numel)."""
        self.op(b"(").text("storage").glob("torch", "FloatStorage").text(key).text("cpu")
        return self.op(b"J", struct.pack("<i", numel)).op(b"t").op(b"Q")

    def done(self) -> bytes:
        return bytes(self.data + b".")


def _torch_zip(
    path: Path, pickle_bytes: bytes, members: dict[str, bytes] | None = None, method: int = 0
) -> Path:
    """A zip laid out like torch.save's: ``archive/data.pkl`` first, then the named members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_bytes, compress_type=method)
        for name, data in (members or {}).items():
            archive.writestr(f"archive/{name}", data)
        archive.writestr("archive/byteorder", "little")
    return path


def _case(folder: Path, name: str, path: Path, operation: str, reason: str = "", **kwargs) -> HostileCase:
    good = _good(folder)
    return HostileCase(name, folder, path, operation, expect_listed=(good.name,), reason=reason, **kwargs)


# ---------------------------------------------------------------------------------- hangs


def shared_list_bomb(folder: Path) -> HostileCase:
    """Shared nested lists: 40 doublings are 2^40 leaves to a walker that follows references."""
    nested: list = [1.0]
    for _ in range(40):
        nested = [nested, nested]
    path = folder / "bomb.pt"
    torch.save(
        {"model_state_dict": tiny_model().state_dict(), "metrics": {"val_loss": 0.1}, "x": nested}, path
    )
    return _case(folder, "shared-list-bomb", path, "list", r"refused: .*(cost|objects)")


def size_tuple_of_huge_strings(folder: Path) -> HostileCase:
    """A tensor whose size tuple holds thousands of references to one 4,000-digit string."""
    p = _Pickle().op(b"}").text("model_state_dict").op(b"}").text("w")
    p.glob("torch._utils", "_rebuild_tensor_v2").op(b"(").storage().int1(0)
    p.op(b"(").text("9" * 4000).put(1)
    for _ in range(5000):
        p.get(1)
    p.op(b"t").op(b"(").int1(1).op(b"t").op(b"\x89").glob("collections", "OrderedDict").op(b")").op(b"R")
    p.op(b"t").op(b"R").op(b"s").op(b"s")
    path = _torch_zip(folder / "sizes.pt", p.done(), {"data/0": b"\0" * 4})
    return _case(folder, "size-tuple-of-strings", path, "list", "refused|damaged")


def fifo_named_like_a_checkpoint(folder: Path) -> HostileCase:
    """A named pipe called *.pt: open() for reading blocks until a writer comes, forever."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipe.pt"
    os.mkfifo(path)
    return _case(folder, "fifo-listing", path, "list", r"named pipe \(FIFO\)")


def fifo_with_our_name(folder: Path) -> HostileCase:
    """A named pipe with our file-name pattern: the next save's retention used to open it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / checkpoint_filename(0, 5, WHEN)
    os.mkfifo(path)
    return _case(folder, "fifo-retention", path, "save")


def short_text_lines(folder: Path) -> HostileCase:
    """600,000 protocol-0 strings of one character (3.6 MB, deflated to 6 KB): each line was
    found in a copy of everything after it, so reading them took about a minute (the time
    grew with the square of the size)."""
    data = b"S'a'\n0" * 600_000 + b"N."
    path = _torch_zip(folder / "lines.pt", data, method=zipfile.ZIP_DEFLATED)
    return _case(folder, "short-text-lines", path, "list", r"holds a NoneType")


def memo_bomb(folder: Path) -> HostileCase:
    """None stored in the memo 3 million times (6 MB, deflated to a few KB); the 64 MB the
    listing reads would be 32 million entries, gigabytes, if the memo were not counted."""
    data = b"\x80\x04" + b"N\x94" * 3_000_000 + b"N."
    path = _torch_zip(folder / "memo.pt", data, method=zipfile.ZIP_DEFLATED)
    return _case(folder, "memo-bomb", path, "list", r"refused: more opcodes run, memo entries stored")


# ---------------------------------------------------------------------------------- crashes


def deep_pickle(folder: Path) -> HostileCase:
    """Lists nested 200,000 deep in data.pkl: RecursionError in any recursive walker."""
    depth = 200_000
    data = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    path = _torch_zip(folder / "deep.pt", data)
    return _case(folder, "deep-pickle", path, "list", r"refused: .*(deep|nest)")


def deep_json_record(folder: Path) -> HostileCase:
    """Our JSON record nested 100,000 deep: the JSON parser recurses."""
    return _with_record(
        folder, "deep-json-record", lambda _: "[" * 100_000 + "]" * 100_000, "refused|not valid JSON"
    )


def record_of_empty_objects(folder: Path) -> HostileCase:
    """Our record as a million empty objects: 2 MB, within the byte cap, a long parse at every save."""
    return _with_record(
        folder, "record-of-empty-objects", lambda r: "[" + ",".join(["{}"] * 1_000_000) + "]",
        r"refused: it holds [\d,]+ objects and arrays", "save",
    )  # fmt: skip


def huge_integer_in_record(folder: Path) -> HostileCase:
    """A 400-digit global_step in the record: float()/int() overflow in every consumer."""
    return _with_record(
        folder,
        "huge-integer-in-record",
        lambda r: json.dumps({**r, "global_step": 10**400}),
        "disagrees",
        "save",
    )


def _with_record(
    folder: Path, name: str, change: Callable[[dict], str], reason: str, op: str = "list"
) -> HostileCase:
    """A genuine checkpoint whose JSON record was replaced by ``change(record)``."""
    source = _good(folder / "_source", step=7)
    path = folder / source.name
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        infos = original.infolist()
        for info in infos[:-1]:
            copy.writestr(info, original.read(info))
        copy.writestr(infos[-1].filename, change(json.loads(original.read(infos[-1]))))
    _remove_tree(folder / "_source")
    return _case(folder, name, path, op, reason)


def odd_scalar_metrics(folder: Path) -> HostileCase:
    """Metrics stored as an empty tensor, a two-element tensor and a complex scalar."""
    path = folder / checkpoint_filename(0, 3, WHEN)
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = {
        "val_loss": torch.empty(0),
        "train_loss": torch.tensor([1.0, 2.0]),
        "learning_rate": torch.tensor(1 + 2j),
    }
    torch.save({"model_state_dict": tiny_model().state_dict(), "metrics": metrics}, path)
    good = _good(folder)
    return HostileCase("odd-scalar-metrics", folder, path, "list", expect_listed=(good.name, path.name))


def zero_dim_size_element(folder: Path) -> HostileCase:
    """A tensor whose size tuple holds a 0-dim tensor instead of an int."""
    p = _Pickle().op(b"}").text("w")
    p.glob("torch._utils", "_rebuild_tensor_v2").op(b"(").storage(key="0").int1(0)
    p.glob("torch._utils", "_rebuild_tensor_v2").op(b"(").storage(key="1").int1(0)
    p.op(b")").op(b")").op(b"\x89").glob("collections", "OrderedDict").op(b")").op(b"R").op(b"t").op(b"R")
    p.op(b"\x85").op(b"(").int1(1).op(b"t").op(b"\x89").glob("collections", "OrderedDict").op(b")").op(b"R")
    p.op(b"t").op(b"R").op(b"s")
    path = _torch_zip(folder / "zero-dim.pt", p.done(), {"data/0": b"\0" * 4, "data/1": b"\0" * 4})
    return _case(folder, "zero-dim-size", path, "load", "damaged|size|int")


# ---------------------------------------------------------------------------------- memory


def bytearray_bomb(folder: Path) -> HostileCase:
    """bytearray(3_000_000_000) from a pickle of a few dozen bytes."""
    p = _Pickle().op(b"}").text("model_state_dict").glob("builtins", "bytearray")
    p.op(b"J", struct.pack("<i", 2**31 - 1)).op(b"\x85").op(b"R").op(b"s")
    path = _torch_zip(folder / "bytearray.pt", p.done())
    return _case(folder, "bytearray-bomb", path, "list", "bytearray")


def deflate_bomb_pickle(folder: Path) -> HostileCase:
    """data.pkl deflated: 100 MB of zeros in about 100 KB."""
    path = _torch_zip(folder / "inflate.pt", b"\0" * (100 << 20), method=zipfile.ZIP_DEFLATED)
    return _case(folder, "deflate-bomb-pickle", path, "list", r"refused: .*(inflates|holds)")


def deflate_bomb_record(folder: Path) -> HostileCase:
    """Our JSON record deflated: 40 MB of spaces (read at every save by retention)."""
    source = _good(folder / "_source", step=7)
    path = folder / source.name
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        infos = original.infolist()
        for info in infos[:-1]:
            copy.writestr(info, original.read(info))
        copy.writestr(infos[-1].filename, b" " * (40 << 20), compress_type=zipfile.ZIP_DEFLATED)
    _remove_tree(folder / "_source")
    return _case(folder, "deflate-bomb-record", path, "save", r"refused")


def bzip2_pickle(folder: Path) -> HostileCase:
    """data.pkl compressed with bzip2 (torch.save never compresses)."""
    path = _torch_zip(folder / "bzip.pt", b"\x80\x02}." * 10, method=zipfile.ZIP_BZIP2)
    return _case(folder, "bzip2-pickle", path, "list", "method 12")


def sparse_metric_member(folder: Path) -> HostileCase:
    """A one-element metric whose storage member is a 1 GB (sparse) file region."""
    path = folder / checkpoint_filename(0, 4, WHEN)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model_state_dict": tiny_model().state_dict(), "metrics": {"val_loss": torch.tensor(0.5)}}, path
    )
    metric_member = _last_storage_member(path)  # pickled after the weights
    _inflate_member(path, lambda name: name == metric_member, 1 << 30)
    good = _good(folder)
    return HostileCase("gigabyte-metric-member", folder, path, "list", expect_listed=(good.name, path.name))


def _last_storage_member(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return [i.filename for i in archive.infolist() if "/data/" in i.filename][-1]


def _inflate_member(path: Path, pick: Callable[[str], bool], size: int) -> None:
    """Rewrite ``path`` so that the picked member declares ``size`` bytes, stored as a hole."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with open(path, "wb") as out:
        directory = []
        for name, data in members:
            if pick(name):
                data_size, crc = size, 0
            else:
                data_size, crc = len(data), zlib.crc32(data)
            offset = out.tell()
            raw = name.encode()
            out.write(
                struct.pack(
                    "<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, data_size, data_size, len(raw), 0
                )
            )
            out.write(raw)
            if pick(name):
                out.seek(data_size, os.SEEK_CUR)
                out.truncate()
            else:
                out.write(data)
            directory.append((raw, crc, data_size, offset))
        start = out.tell()
        for raw, crc, data_size, offset in directory:
            out.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, data_size, data_size,
                                  len(raw), 0, 0, 0, 0, 0, offset))  # fmt: skip
            out.write(raw)
        end = out.tell()
        out.write(
            struct.pack(
                "<4s4H2LH", b"PK\x05\x06", 0, 0, len(directory), len(directory), end - start, start, 0
            )
        )


def config_bomb_into_wrong_model(folder: Path) -> HostileCase:
    """A config holding 2^18 shared list leaves (within the reader's budget), loaded into a model it
    does not fit: the mismatch panel compares and prints that config."""
    nested: list = [1]
    for _ in range(18):
        nested = [nested, nested]
    path = folder / "config-bomb.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    other = GPT(config_for_preset("tiny", n_layer=3))
    config = {"model": {"n_layer": nested, "n_embd": nested}}
    torch.save({"model_state_dict": other.state_dict(), "format_version": 1, "config": config}, path)
    good = _good(folder)  # it is a readable checkpoint of another model: listed
    return HostileCase("config-bomb-panel", folder, path, "render", (good.name, path.name), "do not fit")


def symlink_to_dev_zero(folder: Path) -> HostileCase:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "zero.pt"
    path.symlink_to("/dev/zero")
    return _case(folder, "symlink-dev-zero", path, "list", "character device")


# ---------------------------------------------------------------------------------- state, lies, text


def build_on_counter(folder: Path) -> HostileCase:
    """BUILD with a dict state on collections.Counter: setattr during listing."""
    p = _Pickle().op(b"}").text("model_state_dict").glob("collections", "Counter").op(b")").op(b"R")
    p.op(b"}").text("pwned").int1(1).op(b"s").op(b"b").op(b"s")
    path = _torch_zip(folder / "counter.pt", p.done())
    return _case(folder, "build-on-counter", path, "list", "Counter")


def float4_weights(folder: Path) -> HostileCase:
    """A weight stored as float4 (a dtype copy_ cannot convert): refused before the first copy."""
    model = tiny_model()
    state = model.state_dict()
    last = "transformer.ln_f.weight"
    state[last] = torch.zeros(state[last].numel() // 2, dtype=torch.uint8).view(torch.float4_e2m1fn_x2)
    state[last] = state[last].reshape(-1)
    path = folder / "float4.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    good = _good(folder)  # listed: its names and shapes are fine; loading refuses it
    return HostileCase("float4-weight", folder, path, "load", (good.name, path.name), "float4|dtype")


def record_only_zip(folder: Path) -> HostileCase:
    """303 bytes: a zip holding only a record that claims val_loss 0 and step 10^12. Counted as
    best and newest, it made retention delete the genuine best; ignored, the genuine best stays."""
    _good(folder, step=10, val_loss=2.0)  # retention deletes this one either way (neither best nor last)
    second = _good(folder, step=20, val_loss=1.5)
    path = folder / checkpoint_filename(0, 10**12, WHEN)
    record = {"format_version": 1, "epoch": 0, "global_step": 10**12, "metrics": {"val_loss": 0.0}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/checkpoint_meta.json", json.dumps(record))
    return HostileCase("record-only-zip", folder, path, "save", expect_listed=(second.name,))


def escape_codes_in_names(folder: Path) -> HostileCase:
    """A file name and a global name holding newlines and ESC sequences."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "x\n  0  Skipped nothing: all checkpoints are valid\x1b[2J.pt"
    p = _Pickle().op(b"}").text("model_state_dict").glob("os\x1b[31m", "system\nFORGED").op(b"s")
    _torch_zip(path, p.done())
    return _case(folder, "escape-codes", path, "list", r"\\x1b")


def symlink_to_a_secret(folder: Path) -> HostileCase:
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder.parent / f"{folder.name}-secret.txt"
    secret.write_text("SECRET-TOKEN-1234 and more text\n")
    path = folder / "link.pt"
    path.symlink_to(secret)
    return _case(folder, "symlink-leak", path, "list", r"damaged or not a checkpoint \(\d+ bytes of text")


def storage_past_its_member(folder: Path) -> HostileCase:
    """A real state_dict whose first storage member was cut to 4 bytes while data.pkl still declares
    the full tensor: a memory-mapped load would read the bytes of the members after it."""
    full = folder / "_full.pt"
    torch.save(tiny_model().state_dict(), full)
    path = folder / "overrun.pt"
    with zipfile.ZipFile(full) as original, zipfile.ZipFile(path, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            copy.writestr(info, data[:4] if info.filename.endswith("/data/0") else data)
    full.unlink()
    good = _good(folder)  # listed (metadata only); loading refuses it
    reason = r"declares [\d,]+ bytes but its member holds 4"
    return HostileCase("storage-past-member", folder, path, "load", (good.name, path.name), reason)


def sparse_weights(folder: Path) -> HostileCase:
    """A state_dict with a sparse COO tensor: torch's weights_only loads it, so must we."""
    model = tiny_model()
    state = model.state_dict()
    name = "transformer.ln_f.bias"
    state[name] = state[name].to_sparse()
    path = folder / "sparse.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    good = _good(folder)
    return HostileCase(
        "sparse-tensor", folder, path, "load", expect_listed=(good.name, path.name), loads=True
    )


def _remove_tree(path: Path) -> None:
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


BUILDERS: dict[str, Callable[[Path], HostileCase]] = {
    "shared-list-bomb": shared_list_bomb,
    "size-tuple-of-strings": size_tuple_of_huge_strings,
    "fifo-listing": fifo_named_like_a_checkpoint,
    "fifo-retention": fifo_with_our_name,
    "short-text-lines": short_text_lines,
    "memo-bomb": memo_bomb,
    "deep-pickle": deep_pickle,
    "deep-json-record": deep_json_record,
    "record-of-empty-objects": record_of_empty_objects,
    "huge-integer-in-record": huge_integer_in_record,
    "odd-scalar-metrics": odd_scalar_metrics,
    "zero-dim-size": zero_dim_size_element,
    "bytearray-bomb": bytearray_bomb,
    "deflate-bomb-pickle": deflate_bomb_pickle,
    "deflate-bomb-record": deflate_bomb_record,
    "bzip2-pickle": bzip2_pickle,
    "gigabyte-metric-member": sparse_metric_member,
    "config-bomb-panel": config_bomb_into_wrong_model,
    "symlink-dev-zero": symlink_to_dev_zero,
    "build-on-counter": build_on_counter,
    "float4-weight": float4_weights,
    "record-only-zip": record_only_zip,
    "escape-codes": escape_codes_in_names,
    "symlink-leak": symlink_to_a_secret,
    "storage-past-member": storage_past_its_member,
    "sparse-tensor": sparse_weights,
}

"""The safetensors reader: a header is a claim, checked before any tensor is mapped."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from utils.training.engine import safetensors_file, untrusted
from utils.training.engine.errors import CorruptCheckpointError
from utils.training.engine.safetensors_file import SafetensorsFile, looks_like_safetensors
from utils.training.engine.untrusted import Limits, open_untrusted

from .hf_files import safetensors_bytes


def _open(path):
    with open_untrusted(path) as handle:
        file = SafetensorsFile(handle)
        return {name: file.tensor(name).clone() for name in file.entries}, file.metadata


def _write(tmp_path, header, data=b"", name="x.safetensors"):
    path = tmp_path / name
    path.write_bytes(safetensors_bytes(header, data))
    return path


class TestSafetensorsFile:
    def test_reads_what_the_library_wrote(self, tmp_path):
        tensors = {"a": torch.arange(6.0).view(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64),
                   "c": torch.ones(3, dtype=torch.bfloat16), "empty": torch.zeros(0, 4)}  # fmt: skip
        save_file(tensors, tmp_path / "w.safetensors", metadata={"format": "pt"})
        read, metadata = _open(tmp_path / "w.safetensors")
        assert metadata == {"format": "pt"}
        for name, tensor in tensors.items():
            assert read[name].dtype == tensor.dtype and torch.equal(read[name], tensor)

    def test_a_misaligned_tensor_is_copied_aligned(self, tmp_path):
        data = b"\0" + torch.tensor([1.5, 2.5]).numpy().tobytes()  # 1 byte of padding, then 2 floats
        header = {"pad": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                  "x": {"dtype": "F32", "shape": [2], "data_offsets": [1, 9]}}  # fmt: skip
        path = _write(tmp_path, header, data)
        read, _ = _open(path)
        assert torch.equal(read["x"], torch.tensor([1.5, 2.5]))

    BAD = [
        ("offsets", {"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8,
         "outside the file's 8 bytes of tensor data"),
        ("sizes", {"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8,
         r"shape \[3\] \(12 bytes\) a byte range of 8 bytes"),
        ("dtype", {"x": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}, b"\0", "dtype 'F4'"),
        ("shape", {"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "not a list of sizes"),
        ("entry", {"x": [1, 2]}, b"", "JSON list, not an object"),
        ("overlap", {"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                     "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}, b"\0" * 3,
         "places tensors 'a' and 'b' on the same bytes"),
    ]  # fmt: skip

    @pytest.mark.parametrize(("case", "header", "data", "message"), BAD, ids=[b[0] for b in BAD])
    def test_a_header_that_does_not_fit_the_file(self, tmp_path, case, header, data, message):
        with pytest.raises(CorruptCheckpointError, match=message):
            _open(_write(tmp_path, header, data))

    def test_a_header_over_the_cap_is_refused_before_it_is_read(self, tmp_path, monkeypatch):
        path = _write(tmp_path, {"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
        monkeypatch.setattr(safetensors_file, "LIMITS", Limits(header_bytes=16))
        with pytest.raises(
            CorruptCheckpointError,
            match=r"refused: its header length is implausible for a 73-byte file \(.* at most 16 bytes\)",
        ):
            _open(path)

    def test_the_length_field_is_never_echoed(self, tmp_path):
        """A text file read as safetensors (e.g. a symlinked secret): its first 8 bytes stay private."""
        path = tmp_path / "model.safetensors"
        path.write_bytes(b"hunter2!and more private text\n")
        with pytest.raises(CorruptCheckpointError, match="implausible for a 30-byte file") as caught:
            _open(path)
        number = int.from_bytes(b"hunter2!", "little")
        message = str(caught.value).replace(",", "")
        assert str(number) not in message and "hunter2" not in message

    def test_a_header_with_more_objects_than_tensors_need_is_refused_unparsed(self, tmp_path, monkeypatch):
        body = b'{"a":[' + b"{}," * 400_000 + b"{}]}"  # 1.2 MB: 400,000 dicts, over 3 per tensor
        path = tmp_path / "x.safetensors"
        path.write_bytes(len(body).to_bytes(8, "little") + body)
        parsed = []
        monkeypatch.setattr(untrusted.json, "loads", lambda *a, **k: parsed.append(1))
        with pytest.raises(
            CorruptCheckpointError,
            match=r"refused: its safetensors header is not parsed: it holds 400,003 objects and arrays \(at most 300,008\)",
        ):
            _open(path)
        assert parsed == []

    def test_more_tensors_than_the_cap_are_refused(self, tmp_path, monkeypatch):
        monkeypatch.setattr(safetensors_file, "MAX_TENSORS", 2)
        header = {n: {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i, n in enumerate("abc")}
        with pytest.raises(
            CorruptCheckpointError, match="refused: its header describes 3 tensors, more than 2"
        ):
            _open(_write(tmp_path, header, b"\0" * 3))

    def test_truncated_and_garbled_headers(self, tmp_path):
        short = tmp_path / "short.safetensors"
        short.write_bytes((1000).to_bytes(8, "little") + b"{}")
        with pytest.raises(
            CorruptCheckpointError, match="is truncated: its header is longer than the file's 10 bytes"
        ):
            _open(short)
        garbled = tmp_path / "garbled.safetensors"
        garbled.write_bytes((4).to_bytes(8, "little") + b"{\xff\xfe}")
        with pytest.raises(CorruptCheckpointError, match="not valid JSON"):
            _open(garbled)
        deep = tmp_path / "deep.safetensors"
        body = b"[" * 100_000 + b"]" * 100_000  # within the object budget, deeper than the parser recurses
        deep.write_bytes(len(body).to_bytes(8, "little") + body)
        with pytest.raises(CorruptCheckpointError, match="header is not parsed: it is nested too deeply"):
            _open(deep)


class TestLooksLikeSafetensors:
    def test_only_a_plausible_length_followed_by_a_brace(self):
        assert looks_like_safetensors((2).to_bytes(8, "little") + b"{}", 10)
        assert not looks_like_safetensors((20).to_bytes(8, "little") + b"{}", 10)
        assert not looks_like_safetensors(b"PK\x03\x04" + b"\0" * 8, 100)

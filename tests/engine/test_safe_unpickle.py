"""The code-free structure reader for torch's data.pkl."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import pytest
import torch

from utils.training.engine.safe_unpickle import RefusedGlobalError, TensorStub, load_structure


def _data_pkl(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with zipfile.ZipFile(buffer) as archive:
        return archive.read(archive.namelist()[0])


class _Runs:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class TestLoadStructure:
    def test_tensors_become_stubs_with_dtype_and_shape(self):
        obj = load_structure(_data_pkl({"w": torch.ones(2, 3, dtype=torch.float16), "n": 3, "s": "x"}))
        assert obj["w"] == TensorStub(torch.float16, (2, 3), obj["w"].storage, 0)
        assert (obj["n"], obj["s"], obj["w"].numel) == (3, "x", 6)

    def test_parameters_sizes_dtypes_bytes_sets(self):
        obj = load_structure(
            _data_pkl(
                {
                    "p": torch.nn.Parameter(torch.ones(2)),
                    "size": torch.Size([4]),
                    "dt": torch.bfloat16,
                    "b": b"\x00\xff",
                    "set": {1, 2},
                }
            )
        )
        assert isinstance(obj["p"], TensorStub) and obj["size"] == torch.Size([4])
        assert (obj["dt"], obj["b"], obj["set"]) == (torch.bfloat16, b"\x00\xff", {1, 2})

    def test_code_is_refused_before_it_runs(self):
        with pytest.raises(RefusedGlobalError, match="posix.system|os.system"):
            load_structure(pickle.dumps({"x": _Runs()}, protocol=2))

    def test_arbitrary_class_is_refused(self):
        with pytest.raises(RefusedGlobalError, match="collections.deque"):
            load_structure(pickle.dumps(__import__("collections").deque([1]), protocol=2))

    def test_unknown_persistent_id(self):
        class Writer(pickle.Pickler):
            def persistent_id(self, obj):
                return ("weird", 1) if obj == "p" else None

        buffer = io.BytesIO()
        Writer(buffer, protocol=2).dump(["p"])
        with pytest.raises(pickle.UnpicklingError, match="unknown persistent id"):
            load_structure(buffer.getvalue())

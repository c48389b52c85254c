"""The restricted unpickler on real files: what it reads matches what torch.load reads.

Crafted, hostile pickles are in test_unpickler_hostile.py.
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import warnings
import zipfile

import pytest
import torch

from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.format import count_leaves
from utils.training.engine.safe_unpickle import (
    BudgetExceededError,
    ObjectStub,
    SparseTensorStub,
    StoragePlaceholder,
    TensorStub,
    load_structure,
    load_structure_at,
    read_dcp_metadata_structure,
    walk_leaves,
)
from utils.training.engine.safe_unpickle import allowlist as pickle_allowlist
from utils.training.rng import capture_rng_state

from .helpers import TinyNet, stepped_optimizer


def _zip_members(obj) -> tuple[bytes, dict[str, bytes]]:
    """(data.pkl, {storage key: bytes}) of ``torch.save(obj)``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with zipfile.ZipFile(buffer) as archive:
        root = archive.namelist()[0].split("/")[0]
        storages = {n.rsplit("/", 1)[1]: archive.read(n) for n in archive.namelist() if "/data/" in n}
        return archive.read(f"{root}/data.pkl"), storages


def _data_pkl(obj) -> bytes:
    return _zip_members(obj)[0]


def _mirror(obj):
    """A tensor as (dtype, shape, stride, offset), containers rebuilt: comparable with our stubs."""
    if isinstance(obj, torch.Tensor):
        return (obj.dtype, tuple(obj.shape), obj.stride(), obj.storage_offset())
    if isinstance(obj, TensorStub):
        return (obj.dtype, obj.shape, obj.stride, obj.offset)
    if isinstance(obj, dict):
        return {k: _mirror(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_mirror(v) for v in obj)
    return obj


def _from_storage(stub: TensorStub, storages: dict[str, bytes]) -> torch.Tensor:
    """The tensor a stub describes, read from the raw storage bytes (as a loader would)."""
    flat = torch.frombuffer(bytearray(storages[stub.storage.key]), dtype=stub.dtype)
    return flat.as_strided(stub.shape, stub.stride, stub.offset)


_LIGHTNING = [
    "lightning",
    "lightning.fabric",
    "lightning.fabric.utilities",
    "lightning.fabric.utilities.data",
]


@pytest.fixture
def fake_lightning(monkeypatch):
    """A stand-in for lightning's AttributeDict, importable under its real module name."""
    for name in _LIGHTNING:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))

    class AttributeDict(dict):  # what lightning's does: keys as attributes
        def __getattr__(self, key):
            try:
                return self[key]
            except KeyError as error:
                raise AttributeError(key) from error

    AttributeDict.__module__, AttributeDict.__qualname__ = _LIGHTNING[-1], "AttributeDict"
    sys.modules[_LIGHTNING[-1]].AttributeDict = AttributeDict
    return AttributeDict


class TestLoadStructure:
    def test_state_dict_reads_as_torch_reads_it(self):
        model = TinyNet()
        obj = load_structure(_data_pkl(model.state_dict()))  # an OrderedDict with _metadata (BUILD)
        assert isinstance(obj, collections.OrderedDict) and list(obj) == list(model.state_dict())
        assert _mirror(obj) == _mirror(model.state_dict())
        assert all(isinstance(v.storage, StoragePlaceholder) for v in obj.values())

    def test_full_checkpoint_with_optimizer_and_rng_state(self, tmp_path):
        model = TinyNet()
        path = save_checkpoint(
            tmp_path, model, stepped_optimizer(model), epoch=2, global_step=7, metrics={"train_loss": 1.5},
            rng_state=capture_rng_state(), retention=None,
        )  # fmt: skip
        with zipfile.ZipFile(path) as archive:
            root = archive.namelist()[0].split("/")[0]
            obj = load_structure(archive.read(f"{root}/data.pkl"))
        loaded = torch.load(path, weights_only=True)
        assert _mirror(obj) == _mirror(loaded)
        assert walk_leaves(obj, TensorStub) == count_leaves(loaded, torch.Tensor) > 10
        assert obj["rng_state"]["python"] == loaded["rng_state"]["python"]  # 625 ints, some of 5 bytes

    def test_tensor_bytes_are_where_the_stub_says(self):
        weights = {"w": torch.arange(12.0).reshape(3, 4).t(), "view": torch.arange(10.0)[3:7]}
        data, storages = _zip_members(weights)
        obj = load_structure(data)
        for name, tensor in weights.items():
            assert torch.equal(_from_storage(obj[name], storages), tensor)
        assert obj["view"].offset == 3 and obj["view"].storage_extent == 4

    def test_conjugated_view_keeps_its_math_bit(self):
        original = torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex64).conj()
        data, storages = _zip_members({"z": original})
        stub = load_structure(data)["z"]
        assert stub.math_bits == ("conj",)
        assert torch.equal(_from_storage(stub, storages).conj(), original)

    def test_sparse_tensor_is_a_stub_that_rebuilds_it(self):
        original = torch.tensor([[0.0, 2.0], [3.0, 0.0]]).to_sparse()
        data, storages = _zip_members({"s": original})
        stub = load_structure(data)["s"]
        assert isinstance(stub, SparseTensorStub) and stub.layout == torch.sparse_coo
        assert (stub.shape, stub.dtype, stub.is_coalesced) == ((2, 2), torch.float32, True)
        indices, values = (_from_storage(part, storages) for part in stub.components)
        rebuilt = torch.sparse_coo_tensor(
            indices, values, stub.shape, is_coalesced=stub.is_coalesced, check_invariants=True
        )
        assert torch.equal(rebuilt.to_dense(), original.to_dense())
        assert len(stub.storages()) == 2

    def test_new_dtypes_use_untyped_storages(self):
        obj = load_structure(
            _data_pkl(
                {"u": torch.zeros(3, dtype=torch.uint16), "f8": torch.zeros(2, 2, dtype=torch.float8_e4m3fn)}
            )
        )
        assert (obj["u"].dtype, obj["u"].storage.dtype, obj["u"].storage.nbytes) == (
            torch.uint16,
            torch.uint8,
            6,
        )
        assert (obj["f8"].dtype, obj["f8"].shape, obj["f8"].storage_extent) == (
            torch.float8_e4m3fn,
            (2, 2),
            4,
        )

    def test_other_tensor_kinds_are_opaque_stubs(self):
        obj = load_structure(
            _data_pkl({"meta": torch.empty(2, 3, device="meta"), "p": torch.nn.Parameter(torch.ones(2))})
        )
        assert (obj["meta"].kind, obj["meta"].shape, obj["meta"].opaque) == ("meta", (2, 3), True)
        assert (obj["p"].kind, obj["p"].opaque) == ("strided", False)

    def test_inert_values_read_as_themselves(self):
        values = {
            "bytes": b"\x00\xff" * 40, "empty": b"", "set": {1, 2}, "frozen": frozenset({"a"}), "slice": slice(1, 9, 2),
            "complex": 1 + 2j, "size": torch.Size([4, 5]), "dtype": torch.bfloat16, "big": -(2**100),
            "tuple": (1, (2.5, None), True), "ordered": collections.OrderedDict(b=1, a=2), "text": "é" * 100,
        }  # fmt: skip
        for data in (_data_pkl(values), pickle.dumps(values, protocol=0), pickle.dumps(values, protocol=5)):
            assert load_structure(data) == values
        assert load_structure(_data_pkl({"d": torch.device("cuda", 1)}))["d"] == "cuda:1"

    def test_lightning_attribute_dict_reads_as_a_dict(self, fake_lightning, monkeypatch):
        hparams = {"hparams": fake_lightning(lr=0.1, layers=[1, 2])}
        files = [_data_pkl(hparams), pickle.dumps(hparams, protocol=0), pickle.dumps(hparams, protocol=4)]
        for name in _LIGHTNING:  # the reader needs neither lightning nor the class
            monkeypatch.delitem(sys.modules, name)
        for data in files:
            obj = load_structure(data)["hparams"]
            assert type(obj) is dict and obj == {"lr": 0.1, "layers": [1, 2]}

    def test_memoryview_input_is_read_in_place(self):
        data = _data_pkl({"w": torch.ones(2)})
        assert load_structure(memoryview(b"junk" + data)[4:])["w"].shape == (2,)

    def test_code_is_refused_before_it_runs(self):
        import os

        class Runs:
            def __reduce__(self):
                return (os.system, ("echo pwned",))

        with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system|nt.system"):
            load_structure(pickle.dumps({"x": Runs()}, protocol=2))


class TestLoadStructureAt:
    def test_legacy_format_is_several_pickles_in_a_row(self):
        buffer = io.BytesIO()
        weights = {"w": torch.ones(2, 3), "n": 1}
        torch.save(weights, buffer, _use_new_zipfile_serialization=False)
        data = buffer.getvalue()
        magic, end = load_structure_at(data, 0)
        version, end = load_structure_at(data, end)
        system, end = load_structure_at(data, end)
        obj, end = load_structure_at(memoryview(data), end)  # a memoryview of the whole file works too
        keys, end = load_structure_at(data, end)
        assert (magic, version, system["little_endian"]) == (
            0x1950A86A20F9469CFC6C,
            1001,
            sys.byteorder == "little",
        )
        assert _mirror(obj) == _mirror(weights) and keys == [obj["w"].storage.key]
        assert end < len(data)  # the raw storage bytes follow the pickles

    def test_start_outside_the_data(self):
        with pytest.raises(pickle.UnpicklingError, match="start offset 10 outside 3 bytes"):
            load_structure_at(b"N.x", 10)


class TestReadDcpMetadataStructure:
    def test_real_distributed_checkpoint(self, tmp_path):
        import torch.distributed.checkpoint as dcp

        model = TinyNet()
        state = {"model": model.state_dict(), "optim": stepped_optimizer(model).state_dict(), "epoch": 3}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "torch.distributed is disabled ... a single process"
            dcp.save(state, checkpoint_id=tmp_path, no_dist=True)
        meta = read_dcp_metadata_structure((tmp_path / ".metadata").read_bytes())
        entries = meta.state["state_dict_metadata"]
        weight = entries["model.fc1.weight"]
        assert weight.class_name == "TensorStorageMetadata" and weight.state["size"] == torch.Size([8, 4])
        assert weight.state["properties"].state["dtype"] == torch.float32
        assert weight.state["properties"].state["memory_format"] == torch.contiguous_format
        assert entries["epoch"].class_name == "BytesStorageMetadata"
        assert meta.state["planner_data"]["model.fc1.weight"] == ("model", "fc1.weight")
        infos = list(meta.state["storage_data"].values())
        assert infos and all((tmp_path / info.state["relative_path"]).is_file() for info in infos)
        assert str(meta.state["storage_meta"].get("checkpoint_id")) == str(tmp_path)

    def test_other_pickle_is_refused(self):
        with pytest.raises(
            pickle.UnpicklingError, match="not a distributed checkpoint's .metadata: it holds a dict"
        ):
            read_dcp_metadata_structure(pickle.dumps({"a": 1}))


class TestWalkLeaves:
    def test_counts_leaves_in_every_container(self):
        stub = TensorStub()
        obj = {"a": [stub, (stub, {"b": stub})], "s": ObjectStub("x.Y", {"f": [stub]}), "n": 3}
        assert walk_leaves(obj, TensorStub) == 4

    def test_deep_structures_need_no_recursion(self):
        obj: list = [TensorStub()]
        for _ in range(100_000):
            obj = [obj]
        assert walk_leaves(obj, TensorStub) == 1

    def test_node_budget(self):
        with pytest.raises(BudgetExceededError, match="a structure with more values than 10"):
            walk_leaves([[0] * 6, [0] * 6], TensorStub, max_nodes=10)


class TestTensorStub:
    def test_views_and_extents(self):
        storage = StoragePlaceholder(torch.float32, "0", 100)
        stub = TensorStub(torch.float32, (3, 4), (1, 3), storage, 5)
        assert (stub.numel, stub.storage_extent, stub.storages(), stub.opaque) == (12, 12, (storage,), False)
        assert TensorStub(torch.float32, (0, 4), (4, 1), storage).storage_extent == 0
        assert storage.nbytes == 400


class TestResolve:
    def test_every_storage_type_torch_writes_maps_to_torch_dtype(self):
        for name, dtype in torch.storage._storage_type_to_dtype_map().items():
            assert pickle_allowlist.resolve("torch", name).dtype == dtype
        assert pickle_allowlist.resolve("torch.storage", "UntypedStorage").dtype == torch.uint8

    def test_every_rebuild_function_torch_allows_is_allowed(self):
        from torch._weights_only_unpickler import _tensor_rebuild_functions

        for function in _tensor_rebuild_functions():
            assert pickle_allowlist.resolve("torch._utils", function.__name__).rebuilds_tensor

    def test_refused_names(self):
        for module, name in (("builtins", "bytearray"), ("collections", "Counter"), ("builtins", "eval")):
            with pytest.raises(pickle.UnpicklingError, match=f"{module}.{name}"):
                pickle_allowlist.resolve(module, name)

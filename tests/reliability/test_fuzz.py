"""Hypothesis fuzzing: mutated checkpoints against the metadata reader, the listing and the loader.

The property, for every input: each reader returns normally or raises a CheckpointError
subclass (nothing else escapes), the listing never raises at all and returns well-typed
entries, a failed load leaves the model unchanged, and nothing hangs (a per-example
deadline, and faulthandler ends the process if one example ever blocks).

Reproducible in CI: ``derandomize=True`` and no example database, so every run draws the
same examples. ``FUZZ_SCALE=10`` multiplies the example counts for a longer local run.
"""

from __future__ import annotations

import copy
import datetime as dt
import faulthandler
import io
import json
import math
import os
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from utils.training import build_optimizer, build_scheduler, restore_training_state
from utils.training.engine.errors import CheckpointError, NoCheckpointsError, ResumeError
from utils.training.engine.loading import load_model_weights
from utils.training.engine.metadata import read_checkpoint_metadata
from utils.training.engine.record import CheckpointRecord
from utils.training.engine.recovery import format_checkpoint_table, list_checkpoints, recover_training_results

from .mutations import apply_byte_ops, make_base, micro_model, rewrite_member, with_record
from .report import count

SCALE = int(os.environ.get("FUZZ_SCALE", "1"))


def fuzz_settings(examples: int):
    return settings(
        max_examples=examples * SCALE,
        deadline=timedelta(seconds=5),
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_base(tmp_path_factory.mktemp("fuzz-base"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(autouse=True)
def hang_guard():
    """A blocked example (a hang in C code, where no Python timeout reaches) ends the run loudly."""
    faulthandler.dump_traceback_later(120 * SCALE, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def exercise(target: str, folder: Path, data: bytes) -> None:
    """Write ``data`` as the folder's only checkpoint and run every reader on it."""
    path = folder / "checkpoint_epoch0001_step000008_20251122_065455.pt"
    path.write_bytes(data)
    outcome = []
    try:
        _check_metadata(read_checkpoint_metadata(path))
        outcome.append("meta-ok")
    except CheckpointError as error:
        outcome.append(type(error).__name__)
    listing = list_checkpoints(folder, on_skip=None)  # must never raise
    _check_listing(folder, listing)
    outcome.append(f"listed-{len(listing)}")
    outcome.append(_load(path))
    count(f"fuzz: {target}", " | ".join(outcome))


def _check_metadata(record: CheckpointRecord) -> None:
    assert isinstance(record, CheckpointRecord)
    for value in (record.epoch, record.global_step, record.format_version):
        assert value is None or (type(value) is int and 0 <= value < 2**62)
    for value in record.metrics.values():
        assert value is None or (type(value) is float and math.isfinite(value))
    assert record.timestamp is None or dt.datetime.fromisoformat(record.timestamp)
    assert isinstance(record.history, tuple) and all(isinstance(row, dict) for row in record.history)
    assert isinstance(record.config, dict)


def _check_listing(folder: Path, listing) -> None:
    format_checkpoint_table(listing)  # the table renders whatever the files hold
    for info in listing:
        assert info.kind in ("full", "legacy", "bare") and info.size_bytes > 0
        assert info.val_loss is None or math.isfinite(info.val_loss)
    if listing:
        assert recover_training_results(folder)["checkpoint_path"] == str(listing[0].path)
    else:
        with pytest.raises(NoCheckpointsError):
            recover_training_results(folder)


def _load(path: Path) -> str:
    model = micro_model().train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    try:
        report = load_model_weights(model, path, "cpu")
    except CheckpointError as error:
        after = model.state_dict()
        assert all(torch.equal(after[name], tensor) for name, tensor in before.items()), "model changed"
        assert model.training and str(path) in str(error)
        return type(error).__name__
    assert report.verified is not None
    return "load-ok"


# ---------------------------------------------------------------- strategies

_POSITION = st.integers(min_value=0, max_value=1 << 20)


@st.composite
def byte_ops(draw, landmarks: tuple[int, ...]):
    """1-4 mutations; half of the positions near a zip structure (headers, data.pkl, the JSON record)."""
    near = st.builds(lambda at, delta: max(0, at + delta), st.sampled_from(landmarks), st.integers(-48, 96))
    position = st.one_of(_POSITION, near)
    op = st.one_of(
        st.tuples(st.just("flip"), position, st.integers(0, 7)),
        st.tuples(st.just("set"), position, st.integers(0, 255)),
        st.tuples(st.just("truncate"), position),
        st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("delete"), position, st.integers(1, 256)),
        st.tuples(st.just("duplicate"), position, st.integers(1, 512), position),
    )
    return draw(st.lists(op, min_size=1, max_size=4))


_JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    _JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
_RECORD_KEYS = ("format_version", "epoch", "global_step", "timestamp", "metrics", "history", "config",
                "data_state", "has_optimizer", "has_rng_state", "tensor_count")  # fmt: skip


@st.composite
def record_bytes(draw, record: dict) -> bytes:
    """The real JSON record with fields replaced, deleted or added; or not JSON (or not a dict) at all."""
    shape = draw(st.sampled_from(["fields", "fields", "fields", "metric", "not-a-dict", "bytes"]))
    if shape == "not-a-dict":
        return json.dumps(draw(JSON_VALUES)).encode()
    if shape == "bytes":
        return apply_byte_ops(json.dumps(record).encode(), draw(byte_ops((0, 10, 40))))
    mutated = copy.deepcopy(record)
    if shape == "metric":
        mutated["metrics"] = {name: draw(_JSON_LEAF) for name in ("train_loss", "val_loss", "learning_rate")}
    for key in draw(st.lists(st.sampled_from(_RECORD_KEYS + ("extra",)), min_size=1, max_size=4)):
        if draw(st.booleans()):
            mutated.pop(key, None)
        else:
            mutated[key] = draw(JSON_VALUES)
    return json.dumps(mutated).encode()


def _tensor(dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    return (
        torch.zeros(shape, dtype=dtype)
        if dtype in (torch.bool, torch.int64)
        else torch.randn(shape).to(dtype)
    )


_TENSORS = st.builds(
    _tensor,
    st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.bool]),
    st.lists(st.integers(0, 4), max_size=3),
)
_PICKLE_LEAF = st.one_of(_JSON_LEAF, _TENSORS)
PICKLE_VALUES = st.recursive(
    _PICKLE_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8) | st.integers(0, 9), inner, max_size=3)
    | st.lists(inner, max_size=3).map(tuple),
    max_leaves=8,
)  # fmt: skip
_DELETE = object()


@st.composite
def mutated_checkpoint(draw, checkpoint: dict) -> dict:
    """The real checkpoint dict with 1-3 values replaced or deleted, at the top or inside the weights."""
    mutated = dict(checkpoint)
    mutated["model_state_dict"] = dict(checkpoint["model_state_dict"])
    mutated["metrics"] = dict(checkpoint["metrics"])
    weight_names = sorted(checkpoint["model_state_dict"])
    places = st.one_of(
        st.sampled_from(sorted(checkpoint)).map(lambda key: (key,)),
        st.sampled_from(weight_names).map(lambda name: ("model_state_dict", name)),
        st.sampled_from(["train_loss", "val_loss", "learning_rate"]).map(lambda name: ("metrics", name)),
        st.just(("model_state_dict", "transformer.extra.weight")),
    )
    for place in draw(st.lists(places, min_size=1, max_size=3)):
        value = draw(st.one_of(PICKLE_VALUES, st.just(_DELETE)))
        holder = mutated if len(place) == 1 else mutated.get(place[0])
        if not isinstance(holder, dict):
            continue
        if value is _DELETE:
            holder.pop(place[-1], None)
        else:
            holder[place[-1]] = value
    return mutated


# ---------------------------------------------------------------- the fuzz tests


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch, on mutated pickles
@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # a shrunk example holds tensors
class TestFuzzReaders:
    @fuzz_settings(examples=250)
    @given(data=st.data())
    def test_byte_mutations_of_the_whole_file(self, base, workdir, data):
        mutated = apply_byte_ops(base.data, data.draw(byte_ops(base.landmarks)))
        exercise("bytes (flip/set/truncate/insert/delete/duplicate)", workdir, mutated)

    @fuzz_settings(examples=120)
    @given(data=st.data())
    def test_mutated_metadata_records(self, base, workdir, data):
        record = data.draw(record_bytes(base.record))
        exercise("JSON metadata record", workdir, with_record(base.checkpoint, record))

    @fuzz_settings(examples=150)
    @given(data=st.data())
    def test_byte_mutations_of_data_pkl(self, base, workdir, data):
        with zipfile.ZipFile(io.BytesIO(base.data)) as archive:
            pickle_bytes = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
        mutated = apply_byte_ops(pickle_bytes, data.draw(byte_ops((0, 2, len(pickle_bytes) - 2))))
        exercise("data.pkl bytes", workdir, rewrite_member(base.data, "data.pkl", mutated))

    @fuzz_settings(examples=150)
    @given(data=st.data())
    def test_structured_mutations_of_the_pickled_checkpoint(self, base, workdir, data):
        obj = data.draw(mutated_checkpoint(base.checkpoint))
        record = data.draw(st.sampled_from([None, json.dumps(base.record).encode()]))
        exercise("data.pkl structure", workdir, with_record(obj, record))

    @fuzz_settings(examples=150)
    @given(data=st.data())
    def test_structured_mutations_against_resume(self, base, workdir, data):
        obj = data.draw(mutated_checkpoint(base.checkpoint))
        for key in data.draw(st.lists(st.sampled_from(_RESUME_KEYS), max_size=2)):
            obj[key] = data.draw(PICKLE_VALUES)
        path = workdir / "resume.pt"
        path.write_bytes(with_record(obj, None))
        model = micro_model()
        optimizer = build_optimizer(model, 1e-3, 0.1)
        scheduler = build_scheduler(optimizer, 2, 100)
        before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        try:
            restore_training_state(path, model, optimizer, scheduler)
            count("fuzz: resume (restore_training_state)", "resumed")
        except CheckpointError as error:
            count("fuzz: resume (restore_training_state)", type(error).__name__)
            assert str(path) in str(error)
            if not isinstance(error, ResumeError) or "malformed" in error.problem:
                assert all(torch.equal(model.state_dict()[n], t) for n, t in before.items()), "model changed"


_RESUME_KEYS = ("data_state", "rng_state", "step_losses", "history", "scheduler_state_dict", "epoch",
                "global_step", "optimizer_state_dict", "config", "scaler_state_dict")  # fmt: skip

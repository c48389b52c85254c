"""This notebook's own checkpoints: full (with our JSON record), legacy, and bare state_dicts.

A full checkpoint carries a small JSON record as its zip's last member, so its record
is read from a few kilobytes at the end of the file. The record is evidence, not truth:
before the listing ranks it, :func:`record_disagreement` checks that it agrees with the
file it sits in -- the archive has its ``data.pkl`` first, with the CRC-32, size, entry
count and tensor bytes the record claims, and the file name's epoch and step are the
record's. All of this reads only the zip's first and last directory entries, so listing
cost does not grow with the model. A file that disagrees is refused (the listing skips
it, retention never counts it), whatever it claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import format as fmt
from ..errors import CorruptCheckpointError, NotACheckpointError
from ..naming import parse_checkpoint_filename
from ..record import CheckpointRecord, clean_float, clean_int
from ..safe_unpickle import TensorStub
from ..torchfile import DAMAGED_FIX, TorchFile
from ..untrusted import LIMITS, load_json
from .base import Probe, Source, WeightSet
from .records import record_from_fields
from .torch_files import is_torch_file, structure_of, stub_weights, torch_file

__all__ = ["NativeSource", "BareSource", "read_own_record", "record_disagreement"]


class NativeSource(Source):
    """``save_checkpoint``'s files ("full") and the earlier training cell's dicts ("legacy")."""

    kind = "full"

    def claims(self, probe: Probe) -> bool:
        if not is_torch_file(probe):
            return False
        if _json_record(probe) is not None:
            return True
        structure = structure_of(probe)
        return fmt.checkpoint_kind(structure, TensorStub) in ("full", "legacy")

    def read_record(self, probe: Probe) -> CheckpointRecord:
        record = _json_record(probe)
        if record is not None:
            return _record_from_json(probe, record)
        structure = structure_of(probe)
        kind = fmt.checkpoint_kind(structure, TensorStub)
        source = torch_file(probe)
        raw = {key: structure[key] for key in fmt.METADATA_KEYS if key in structure}
        raw[fmt.METRICS_KEY] = _scalars(source, structure.get(fmt.METRICS_KEY))
        facts = fmt.content_facts(structure, TensorStub)
        return record_from_fields(probe, raw, kind=kind, source="pickle", facts=facts)

    def open_weights(self, probe: Probe) -> WeightSet:
        structure = structure_of(probe)
        weights = fmt.model_state_of(structure, TensorStub)
        if weights is None:  # a record that claimed a checkpoint around a pickle without weights
            raise NotACheckpointError(
                probe.path,
                f"is a PyTorch file, but holds {fmt.describe_object(structure, TensorStub)}, not model weights",
                expected="a checkpoint dict with 'model_state_dict'",
                fix="do not trust this file's record; load another checkpoint",
            )
        return stub_weights(probe, weights)

    def open_training_state(self, probe: Probe) -> Mapping[str, Any] | None:
        source = torch_file(probe)
        return source.materialize(structure_of(probe))


class BareSource(Source):
    """A plain ``torch.save(model.state_dict())``: names and tensors, nothing else."""

    kind = "bare"

    def claims(self, probe: Probe) -> bool:
        return is_torch_file(probe) and fmt.checkpoint_kind(structure_of(probe), TensorStub) == "bare"

    def read_record(self, probe: Probe) -> CheckpointRecord:
        facts = fmt.content_facts(structure_of(probe), TensorStub)
        return record_from_fields(probe, {}, kind="bare", source="pickle", facts=facts)

    def open_weights(self, probe: Probe) -> WeightSet:
        return stub_weights(probe, structure_of(probe))


def read_own_record(path: Path) -> CheckpointRecord | None:
    """The record of a file written by ``save_checkpoint``, from its JSON record alone.

    Never unpickles anything (retention reads every checkpoint of a folder on each save).

    Returns:
        The confirmed record, or None when the file carries no record of ours.

    Raises:
        CheckpointError: the file cannot be read, is damaged, or its record disagrees with it.
    """
    from . import probe_path  # the package's probe (one boundary for every read)

    with probe_path(path) as probe:
        if not is_torch_file(probe):
            return None
        record = _json_record(probe)
        return _record_from_json(probe, record) if record is not None else None


def _json_record(probe: Probe) -> dict | None:
    """Our JSON record (the zip's last member), parsed; None when the file has none."""

    def read() -> dict | None:
        source = torch_file(probe)
        if not source.is_zip:
            return None
        last, first = source.last_entry(), source.first_entry()
        root = first.name.split("/", 1)[0] if first is not None else None
        if last is None or root is None or last.name != f"{root}/{fmt.METADATA_RECORD}":
            return None
        data = source.read_member(last, LIMITS.record_bytes)
        try:
            record = load_json(data, LIMITS.record_containers)
        except ValueError as error:
            problem = str(error) if str(error).startswith("refused:") else "is not valid JSON"
            raise CorruptCheckpointError(
                probe.path, f"its metadata record {problem}", fix=DAMAGED_FIX
            ) from None
        return record if isinstance(record, dict) and fmt.FORMAT_VERSION_KEY in record else None

    return probe.cached("json_record", read)


def _record_from_json(probe: Probe, record: dict) -> CheckpointRecord:
    problem = record_disagreement(torch_file(probe), record, probe.path)
    if problem is not None:
        raise CorruptCheckpointError(
            probe.path,
            f"its metadata record disagrees with the file ({problem}): it was not written with this "
            "file, or the file was altered",
            expected="a record that matches the checkpoint it sits in",
            fix="do not trust this file's claims; load another checkpoint (it is never picked as best or latest)",
        )
    facts = {
        "has_optimizer": record.get("has_optimizer") is True,
        "has_rng_state": record.get("has_rng_state") is True,
        "tensor_count": clean_int(record.get("tensor_count")),
    }
    return record_from_fields(probe, record, kind="full", source="record", facts=facts)


def record_disagreement(source: TorchFile, record: Mapping[str, Any], path: Path) -> str | None:
    """Why ``record`` does not describe the zip it sits in; None when it agrees.

    Reads the first and last directory entries only (a few KB whatever the model's size).
    """
    first, end = source.first_entry(), source.end
    if first is None or first.name.count("/") != 1 or not first.name.endswith("/data.pkl"):
        return "the archive has no data.pkl"
    facts = record.get(fmt.ARCHIVE_FACTS_KEY)
    if isinstance(facts, Mapping):
        last = source.last_entry()
        claims = (
            ("entries", end.entries - 1),
            ("data_pkl_crc32", first.crc),
            ("data_pkl_size", first.size),
        )
        for key, actual in claims:
            if facts.get(key) != actual:
                return f"{key}: the record says {_short(facts.get(key))}, the file has {actual:,}"
        tensor_bytes = clean_int(facts.get("storage_bytes"))
        if not tensor_bytes or last is None or tensor_bytes > last.header_offset:
            return f"its tensors would need {_short(facts.get('storage_bytes'))} bytes, the file holds fewer"
        if not clean_int(record.get("tensor_count")):
            return "the record claims no tensors"
    if end.entries < 3:  # data.pkl, at least one tensor, the record
        return "the archive holds no tensor data"
    parsed = parse_checkpoint_filename(path.name)
    if parsed is not None:
        for key, from_name in (("epoch", parsed.epoch), ("global_step", parsed.global_step)):
            if clean_int(record.get(key)) != from_name:
                return f"the file name says {key} {from_name}, the record {_short(record.get(key))}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _scalars(source: TorchFile, metrics: Any) -> dict[str, Any]:
    """Metrics of a pickled dict, one-element tensors (legacy files stored losses so) read as numbers."""
    if not isinstance(metrics, Mapping):
        return {}
    return {
        key: source.scalar(value) if isinstance(value, TensorStub) else clean_float(value)
        for key, value in metrics.items()
        if isinstance(key, str)
    }

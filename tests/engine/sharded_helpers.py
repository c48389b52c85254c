"""Sharded checkpoint folders for engine tests, written in one process by the real sharded saver."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp

from tests.engine.helpers import BASE_TIME, TinyNet, stepped_optimizer
from utils.training.distributed.context import DistributedContext
from utils.training.distributed.sharded_save import save_sharded_checkpoint
from utils.training.rng import capture_rng_state

ONE_PROCESS_FSDP = DistributedContext(strategy="fsdp")  # no process group: the saver's one-process path


def write_sharded(
    folder: Path, epoch: int = 0, step: int = 3, val_loss: float | None = 1.0, **kwargs
) -> Path:
    """A committed sharded checkpoint of a TinyNet (with one AdamW step) in ``folder``; returns its path."""
    model = kwargs.pop("model", None) or TinyNet()
    optimizer = kwargs.pop("optimizer", None) or stepped_optimizer(model)
    kwargs.setdefault("retention", None)
    return save_sharded_checkpoint(
        ONE_PROCESS_FSDP, folder, model, optimizer,
        epoch=epoch, global_step=step,
        metrics={"train_loss": 2.0, "val_loss": val_loss, "learning_rate": 1e-3},
        history=[{"epoch": epoch, "global_step": step, "train_loss": 2.0, "val_loss": val_loss}],
        config={"training": {"seed": 1}},
        rng_state=capture_rng_state(),
        data_state={"epoch": epoch, "batch_in_epoch": 3, "batches_per_epoch": 3, "seed": 1, "world_size": 1},
        step_losses=torch.arange(step, dtype=torch.float64),
        when=BASE_TIME + dt.timedelta(seconds=step),
        **kwargs,
    )  # fmt: skip


def write_dcp(folder: Path, state: dict) -> Path:
    """``dcp.save(state)`` in one process, as any script would."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=folder, no_dist=True)
    return folder


def restate(checkpoint: Path, **changes) -> dict:
    """Rewrite a sharded folder's record as the saver would for its files now (``changes`` applied last)."""
    import json

    from utils.training.engine.sharded_folder import FOLDER_FACTS_KEY, RECORD_NAME, folder_facts

    record = json.loads((checkpoint / RECORD_NAME).read_text())
    record[FOLDER_FACTS_KEY] = folder_facts(checkpoint)
    record.update(changes)
    (checkpoint / RECORD_NAME).write_text(json.dumps(record))
    return record


def rewrite_index(folder: Path, change) -> None:
    """Change DCP's ``.metadata`` with the unrestricted unpickler (the test's own, trusted file)."""
    import pickle

    path = folder / ".metadata"
    metadata = pickle.loads(path.read_bytes())
    change(metadata)
    path.write_bytes(pickle.dumps(metadata))


def torch_zip(path: Path, pickle_bytes: bytes) -> Path:
    """A zip laid out like torch.save's, holding ``pickle_bytes`` as its data.pkl."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    return path


class BytearrayBomb:
    """Pickles as ``bytearray(1_500_000_000)``: 1.5 GB from a few bytes to ``torch.load(weights_only=True)``."""

    def __reduce__(self):
        return (bytearray, (1_500_000_000,))


def forge_sharded_record(parent: Path, val_loss: float = 0.0) -> Path:
    """The review's forged folder: a record claiming the best loss and the highest step, an empty .metadata."""
    import json

    from utils.training.engine import format as fmt
    from utils.training.engine.sharded_folder import DCP_METADATA_NAME, LAYOUT, RECORD_NAME

    folder = parent / "checkpoint_epoch9999_step1000000000000_20991231_235959"
    folder.mkdir()
    record = {fmt.FORMAT_VERSION_KEY: fmt.FORMAT_VERSION, "epoch": 9999, "global_step": 10**12,
              "metrics": {"val_loss": val_loss}, "world_size": 1, "layout": LAYOUT}  # fmt: skip
    (folder / RECORD_NAME).write_text(json.dumps(record))
    (folder / DCP_METADATA_NAME).write_bytes(b"")
    return folder

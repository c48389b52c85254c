"""The bad-input corpus: every broken, foreign, hostile or odd checkpoint a user may meet.

``build_corpus(root)`` writes each case into its own folder under ``root``, starting
from one real checkpoint that ``save_checkpoint`` writes for the ``tiny`` GPT preset.
Case names are fixed at import time (``CASE_NAMES``) so that pytest gives each case
its own test id; byte offsets of the truncations are computed from the real file.

Each :class:`Case` says what must happen:

* ``outcome == "error"``: ``load_model_weights`` raises one of ``errors`` (project
  types only) and the message matches ``problem`` (a regex over what was wrong);
* ``outcome == "load"``: it loads (NaN/Inf weights warn, float16/bfloat16 convert);
* ``listed``: whether ``list_checkpoints`` shows the file; when it does not, one
  "Skipped <name>: <reason>" line must name it;
* ``sentinel``: for a malicious pickle, the file its payload would create.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from utils.model import GPT, config_for_preset
from utils.training.engine.archive import append_member
from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
)
from utils.training.engine.format import METADATA_RECORD

from .payloads import make_payload
from .zip_layout import TRUNCATION_NAMES, truncation_offsets

__all__ = [
    "CASE_NAMES",
    "LOADABLE_NAMES",
    "ERROR_NAMES",
    "Case",
    "TRUNCATION_NAMES",
    "build_corpus",
    "fresh_model",
    "make_payload",
    "write_base_checkpoint",
]

WHEN = dt.datetime(2025, 11, 22, 6, 54, 55)


@dataclass(frozen=True)
class Case:
    """One corpus entry: where it is, and what listing and loading must do with it."""

    name: str
    folder: Path  # listed with list_checkpoints
    path: Path  # loaded with load_model_weights
    outcome: str  # "error" | "load"
    errors: tuple[type[CheckpointError], ...] = ()
    problem: str = ""  # regex the error message must match (what was wrong)
    listed: bool = False
    sentinel: Path | None = None
    notes: dict = field(default_factory=dict)


def fresh_model(seed: int = 1, **overrides) -> GPT:
    """A tiny GPT with seeded random weights (not the corpus checkpoint's)."""
    torch.manual_seed(seed)
    return GPT(config_for_preset("tiny", **overrides))


def _save_model(folder: Path, model: torch.nn.Module, *, optimizer=None, step: int = 12) -> Path:
    """save_checkpoint as Cell 32 calls it, with a stored config and no retention."""
    config = {"model": model.config.to_dict(), "training": {"batch_size": 4}}
    metrics = {"train_loss": 2.5, "val_loss": 2.6, "learning_rate": 1e-3}
    history = [{"epoch": 0, "global_step": step, **metrics}]
    return save_checkpoint(
        folder, model, optimizer, epoch=0, global_step=step, metrics=metrics, history=history,
        config=config, retention=None, when=WHEN,
    )  # fmt: skip


def write_base_checkpoint(folder: Path, step: int = 12) -> Path:
    """The corpus's real checkpoint: tiny preset, AdamW state after one step (about 1.5 MB)."""
    model = fresh_model(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    idx = torch.randint(0, model.config.vocab_size, (2, 16))
    model(idx, idx)[1].backward()
    optimizer.step()
    return _save_model(folder, model, optimizer=optimizer, step=step)


# ---------------------------------------------------------------- case builders

_TRUNCATED = "truncated"  # every cut file with a complete zip magic must say so
_FOREIGN = "not a PyTorch|not one written by torch.save|cannot be read|damaged"
_NOT_WEIGHTS = "not model weights"
_UNSAFE = "run code|unpickl"
_MISMATCH = "do not fit the model"


def _here(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _copy_base(base: Path, folder: Path, name: str | None = None) -> Path:
    target = folder / (name or base.name)
    shutil.copyfile(base, target)
    return target


def _error(name, folder, path, errors, problem, **kw) -> Case:
    return Case(name, folder, path, "error", errors, problem, **kw)


def _bytes_case(root: Path, name: str, data: bytes, errors, problem) -> Case:
    folder = _here(root, name)
    path = folder / "checkpoint_epoch0000_step000012_20251122_065455.pt"
    path.write_bytes(data)
    return _error(name, folder, path, errors, problem)


def _torch_case(root: Path, name: str, obj, errors, problem, record: dict | None = None) -> Case:
    """``torch.save(obj)``; with ``record``, our JSON member is appended as a real save would."""
    folder = _here(root, name)
    path = folder / "checkpoint_epoch0000_step000012_20251122_065455.pt"
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    if record is not None:
        import json

        append_member(buffer, METADATA_RECORD, json.dumps(record).encode())
    path.write_bytes(buffer.getvalue())
    return _error(name, folder, path, errors, problem, listed=record is not None)


def _non_string_names(root: Path, base_weights: dict) -> Case:
    """Weights under integer keys (found by the fuzzer: it once crashed the prefix stripper)."""
    weights = {index: tensor for index, tensor in enumerate(base_weights.values())}
    case = _torch_case(root, "torch-non-string-weight-names", {"model_state_dict": weights, "epoch": 0},
                       (ArchitectureMismatchError,), _MISMATCH)  # fmt: skip
    return _with(case, listed=True)


def _foreign_zip(root: Path) -> Case:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes/readme.txt", "holiday photos, not a model")
        archive.writestr("notes/data.bin", bytes(range(256)) * 4)
    return _bytes_case(
        root,
        "zip-not-a-checkpoint",
        buffer.getvalue(),
        (CorruptCheckpointError,),
        "not one written by torch.save",
    )


def _weights(base_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in base_model.state_dict().items()}


def _architecture_case(root: Path, name: str, **overrides) -> Case:
    folder = _here(root, name)
    path = _save_model(folder, fresh_model(seed=5, **overrides))
    return _error(name, folder, path, (ArchitectureMismatchError,), _MISMATCH, listed=True)


def _nonfinite_case(root: Path) -> Case:
    model = fresh_model(seed=6)
    with torch.no_grad():
        model.transformer.wte.weight[3, 5] = float("nan")
        model.transformer.h[1].mlp.c_fc.bias[0] = float("inf")
        model.transformer.ln_f.weight[2] = float("-inf")
    folder = _here(root, "nan-and-inf-weights")
    path = _save_model(folder, model)
    names = ("transformer.wte.weight", "transformer.h.1.mlp.c_fc.bias", "transformer.ln_f.weight")
    return Case("nan-and-inf-weights", folder, path, "load", listed=True, notes={"nonfinite": names})


def _half_case(root: Path, dtype: torch.dtype) -> Case:
    name = f"{str(dtype).replace('torch.', '')}-weights-for-float32-model"
    folder = _here(root, name)
    path = _save_model(folder, fresh_model(seed=7).to(dtype))
    return Case(name, folder, path, "load", listed=True, notes={"dtype": dtype})


def _odd_path_case(root: Path, base: Path) -> Case:
    folder = _here(root, "path with spaces ünïcödé 日本語 🚀")
    path = _copy_base(base, folder, "mein Modell – ü 日本 🚀.pt")
    return Case("path-with-spaces-and-non-ascii", folder, path, "load", listed=True)


def _malicious_cases(root: Path, base_weights: dict) -> list[Case]:
    cases = []
    specs = {
        # the whole file is the payload (what `torch.save(evil)` gives)
        "malicious-pickle-exec": lambda s: make_payload(s, "exec"),
        "malicious-pickle-os-system": lambda s: make_payload(s, "system"),
        # a real checkpoint with the payload hidden in one value
        "malicious-inside-valid-checkpoint": lambda s: {
            "format_version": 1,
            "model_state_dict": base_weights,
            "epoch": 0,
            "global_step": 12,
            "metrics": {"train_loss": 1.0, "val_loss": make_payload(s), "learning_rate": 1e-3},
        },  # fmt: skip
    }
    for name, build in specs.items():
        sentinel = root / f"PAYLOAD-RAN-{name}"
        case = _torch_case(root, name, build(sentinel), (UnsafeCheckpointError,), _UNSAFE)
        cases.append(_with(case, sentinel=sentinel))
    cases.append(_malicious_with_record(root, base_weights))
    cases.append(_malicious_legacy(root))
    return cases


def _malicious_with_record(root: Path, base_weights: dict) -> Case:
    """A payload behind a genuine-looking JSON record: the listing shows it, loading must refuse it."""
    name = "malicious-behind-valid-metadata-record"
    sentinel = root / f"PAYLOAD-RAN-{name}"
    record = {"format_version": 1, "epoch": 0, "global_step": 12, "metrics": {"val_loss": 0.1}}
    obj = {"format_version": 1, "model_state_dict": base_weights, "evil": make_payload(sentinel)}
    case = _torch_case(root, name, obj, (UnsafeCheckpointError,), _UNSAFE, record=record)
    return _with(case, sentinel=sentinel)


def _malicious_legacy(root: Path) -> Case:
    """The pre-1.6 (non-zip) torch format, which a careless reader unpickles whole."""
    name = "malicious-legacy-torch-format"
    sentinel = root / f"PAYLOAD-RAN-{name}"
    folder = _here(root, name)
    path = folder / "old_model.pt"
    torch.save(
        {"model_state_dict": {}, "x": make_payload(sentinel)}, path, _use_new_zipfile_serialization=False
    )
    return _error(name, folder, path, (UnsafeCheckpointError,), _UNSAFE, sentinel=sentinel)


def _with(case: Case, **changes) -> Case:
    from dataclasses import replace

    return replace(case, **changes)


def _filesystem_cases(root: Path, base: Path) -> list[Case]:
    cases = []
    # CHECKPOINT_DIR names a regular file; the user's checkpoint would be "inside" it.
    as_file = root / "folder-that-is-a-file"
    as_file.write_text("I am a file, not a folder\n")
    cases.append(
        _error(
            "folder-that-is-a-file",
            as_file,
            as_file / base.name,
            (CheckpointNotFoundError,),
            "a part of its path is a file, not a folder",
        )
    )
    # A folder whose name looks like a checkpoint.
    folder = _here(root, "checkpoint-path-is-a-folder")
    (folder / base.name).mkdir()
    cases.append(
        _error("checkpoint-path-is-a-folder", folder, folder / base.name, (NotACheckpointError,), "folder")
    )
    # A link to a checkpoint that was deleted (e.g. Drive sync removed it).
    folder = _here(root, "dangling-symlink")
    link = folder / base.name
    link.symlink_to(folder / "deleted_checkpoint.pt")
    cases.append(
        _error("dangling-symlink", folder, link, (CheckpointNotFoundError,), "does not exist|broken")
    )
    # A missing file in an existing folder.
    folder = _here(root, "missing-file")
    cases.append(
        _error("missing-file", folder, folder / base.name, (CheckpointNotFoundError,), "does not exist")
    )
    return cases


def _truncation_cases(root: Path, base: Path) -> list[Case]:
    data = base.read_bytes()
    return [  # a cut inside the 4-byte zip magic leaves bytes that are no zip at all
        _bytes_case(root, name, data[:keep], (CorruptCheckpointError,), _TRUNCATED if keep >= 4 else _FOREIGN)
        for name, keep in truncation_offsets(base).items()
    ]


def build_corpus(root: Path) -> dict[str, Case]:
    """Write every case under ``root``; returns them by name (the keys equal ``CASE_NAMES``)."""
    root.mkdir(parents=True, exist_ok=True)
    base = write_base_checkpoint(root / "_base")
    base_weights = torch.load(base, weights_only=True)["model_state_dict"]
    rng = random.Random(1234)
    cases = [
        _bytes_case(root, "empty-0-bytes", b"", (CorruptCheckpointError,), "empty"),
        *_truncation_cases(root, base),
        _bytes_case(root, "random-bytes", rng.randbytes(200_000), (CorruptCheckpointError,), _FOREIGN),
        _bytes_case(
            root,
            "random-bytes-with-zip-magic",
            b"PK\x03\x04" + rng.randbytes(50_000),
            (CorruptCheckpointError,),
            _TRUNCATED,
        ),  # fmt: skip
        _bytes_case(
            root, "text-file", b"model weights: see Google Drive\n" * 50, (CorruptCheckpointError,), _FOREIGN
        ),
        _foreign_zip(root),
        _torch_case(root, "torch-list", [torch.ones(3), 1, "two"], (NotACheckpointError,), _NOT_WEIGHTS),
        _torch_case(root, "torch-bare-tensor", torch.zeros(4, 4), (NotACheckpointError,), _NOT_WEIGHTS),
        _torch_case(
            root,
            "torch-dict-without-weights",
            {"epoch": 3, "metrics": {"val_loss": 1.0}},
            (NotACheckpointError,),
            _NOT_WEIGHTS,
        ),  # fmt: skip
        _torch_case(root, "torch-empty-dict", {}, (NotACheckpointError,), _NOT_WEIGHTS),
        _torch_case(
            root,
            "torch-empty-model-state",
            {"model_state_dict": {}, "epoch": 1},
            (NotACheckpointError,),
            _NOT_WEIGHTS,
        ),  # fmt: skip
        _non_string_names(root, base_weights),
        _nonfinite_case(root),
        _half_case(root, torch.float16),
        _half_case(root, torch.bfloat16),
        _architecture_case(root, "wrong-vocab-size", vocab_size=300),
        _architecture_case(root, "missing-layers", n_layer=1),
        _architecture_case(root, "extra-layers", n_layer=3),
        _architecture_case(root, "wider-model", n_embd=96),
        _odd_path_case(root, base),
        *_malicious_cases(root, base_weights),
        *_filesystem_cases(root, base),
    ]
    found = {case.name: case for case in cases}
    assert list(found) == list(CASE_NAMES), sorted(set(found) ^ set(CASE_NAMES))
    assert {n for n, c in found.items() if c.outcome == "load"} == set(LOADABLE_NAMES)
    return found


CASE_NAMES = (
    "empty-0-bytes",
    *TRUNCATION_NAMES,
    "random-bytes",
    "random-bytes-with-zip-magic",
    "text-file",
    "zip-not-a-checkpoint",
    "torch-list",
    "torch-bare-tensor",
    "torch-dict-without-weights",
    "torch-empty-dict",
    "torch-empty-model-state",
    "torch-non-string-weight-names",
    "nan-and-inf-weights",
    "float16-weights-for-float32-model",
    "bfloat16-weights-for-float32-model",
    "wrong-vocab-size",
    "missing-layers",
    "extra-layers",
    "wider-model",
    "path-with-spaces-and-non-ascii",
    "malicious-pickle-exec",
    "malicious-pickle-os-system",
    "malicious-inside-valid-checkpoint",
    "malicious-behind-valid-metadata-record",
    "malicious-legacy-torch-format",
    "folder-that-is-a-file",
    "checkpoint-path-is-a-folder",
    "dangling-symlink",
    "missing-file",
)

# Cases that must load (with a warning or a conversion where the case says so).
LOADABLE_NAMES = (
    "nan-and-inf-weights",
    "float16-weights-for-float32-model",
    "bfloat16-weights-for-float32-model",
    "path-with-spaces-and-non-ascii",
)
ERROR_NAMES = tuple(name for name in CASE_NAMES if name not in LOADABLE_NAMES)

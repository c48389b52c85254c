"""PyTorch Lightning's ``.ckpt``, as ``Trainer`` (``ModelCheckpoint``, ``save_checkpoint``) writes it.

The file is a dict: ``epoch`` (0-based, the epoch of the save: our meaning),
``global_step`` (optimizer steps), ``pytorch-lightning_version``, ``state_dict`` (the
LightningModule's: every name starts with the attribute that holds the network,
``model.`` for ``self.model = GPT(...)``), ``optimizer_states``, ``lr_schedulers``,
``loops``, ``callbacks`` and, after ``save_hyperparameters()``, ``hyper_parameters``
(Lightning's ``AttributeDict``, read as a dict).

* The weights: the one leading prefix whose names are a GPT's is stripped (other
  entries -- a metric's buffers, a loss module -- are left out, with a note); a
  Hugging Face ``GPT2LMHeadModel`` inside the module is translated like any HF file.
* The validation loss: the ``ModelCheckpoint`` callback's ``current_score`` (the score
  of this save) when its ``monitor`` is a validation loss; another monitored metric is
  kept under its own name. The monitor's name is in the record's notes.
* The model settings: ``hyper_parameters`` when they hold GPTConfig's names (at the top,
  or one level down, e.g. ``hparams["config"]``); else the shapes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from ..record import CheckpointRecord, clean_float, clean_int
from ..safe_unpickle import TensorStub
from ..text import safe_text
from .base import Probe, Source, WeightSet
from .hf_layout import hf_layout_of, to_our_weights
from .records import clean_model_settings, record_from_fields
from .torch_files import is_torch_file, structure_of, stub_weights, tensor_spec, torch_file

__all__ = ["LightningSource"]

_VERSION = "pytorch-lightning_version"
_GPT_ROOTS = ("transformer.", "lm_head.", "wte.", "h.")


class LightningSource(Source):
    """A dict with a ``state_dict`` and Lightning's version (or its epoch, step and loops)."""

    kind = "lightning"

    def claims(self, probe: Probe) -> bool:
        if not is_torch_file(probe):
            return False
        structure = structure_of(probe)
        if not isinstance(structure, Mapping) or not isinstance(structure.get("state_dict"), Mapping):
            return False
        return _VERSION in structure or (
            "global_step" in structure and ("loops" in structure or "callbacks" in structure)
        )

    def read_record(self, probe: Probe) -> CheckpointRecord:

        structure = structure_of(probe)
        metrics, notes, lightning = self._monitored(probe, structure)
        model = _hparam_settings(structure.get("hyper_parameters"))
        version = structure.get(_VERSION)
        if isinstance(version, str) and len(version) <= 32:
            lightning["version"] = version
        raw = {
            "epoch": clean_int(structure.get("epoch")),
            "global_step": clean_int(structure.get("global_step")),
            "metrics": metrics,
            "config": {"model": model, "lightning": lightning} if model else {"lightning": lightning},
        }
        facts = {
            "has_optimizer": bool(structure.get("optimizer_states")),
            "has_rng_state": False,
            "tensor_count": sum(isinstance(v, TensorStub) for v in structure["state_dict"].values()),
        }
        if model:
            notes.append(f"model settings from hyper_parameters: {', '.join(sorted(model))}")
        return record_from_fields(probe, raw, kind="lightning", source="pickle", facts=facts, notes=notes)

    def open_weights(self, probe: Probe) -> WeightSet:
        state = structure_of(probe)["state_dict"]
        prefix, names = _gpt_names([name for name in state if isinstance(name, str)])
        chosen = {name[len(prefix) :]: name for name in names}
        notes = (
            [f"removed the LightningModule's prefix {safe_text(prefix, 80)!r} from the weight names"]
            if prefix
            else []
        )
        if len(names) < len(state):
            notes.append(f"left out {len(state) - len(names)} entries of the module that are not the GPT's")
        raw = stub_weights(probe, {name: state[name] for name in names}).renamed(chosen, tuple(notes))
        layout = hf_layout_of(
            {name: tensor_spec(state[old]) for name, old in chosen.items() if _stub(state[old])}
        )
        return to_our_weights(raw, layout) if layout is not None else raw

    @staticmethod
    def _monitored(probe: Probe, structure: Mapping[str, Any]) -> tuple[dict, list[str], dict]:
        """(metrics, notes, facts) from the first ModelCheckpoint callback state with a score."""
        callbacks = structure.get("callbacks")
        if not isinstance(callbacks, Mapping):
            return {}, [], {}
        for key, state in callbacks.items():
            if not (
                isinstance(key, str) and key.startswith("ModelCheckpoint") and isinstance(state, Mapping)
            ):
                continue
            monitor, score = state.get("monitor"), state.get("current_score")
            score = torch_file(probe).scalar(score) if _stub(score) else clean_float(score)
            if not isinstance(monitor, str) or len(monitor) > 64 or clean_float(score) is None:
                continue
            shown = safe_text(monitor, 64)
            name = "val_loss" if _is_validation_loss(monitor) else monitor
            note = f"ModelCheckpoint monitored {shown!r}: its score at this save is the record's {name}"
            return {name: clean_float(score)}, [note], {"monitor": monitor}
        return {}, [], {}


def _stub(value: Any) -> bool:
    return isinstance(value, TensorStub)


def _is_validation_loss(name: str) -> bool:
    lowered = name.lower()
    return "loss" in lowered and ("val" in lowered or "valid" in lowered)


def _gpt_names(names: list[str]) -> tuple[str, list[str]]:
    """The single leading prefix (``model.``) under which the names are a GPT's, and those names.

    No prefix when the module is the GPT itself; every name (for the loader to report) when
    no prefix fits.
    """
    if any(name.startswith(_GPT_ROOTS) for name in names):
        return "", [name for name in names if name.startswith(_GPT_ROOTS)]
    fitting = Counter(
        name.split(".", 1)[0] + "."
        for name in names
        if "." in name and name.split(".", 1)[1].startswith(_GPT_ROOTS)
    )
    if not fitting:
        return "", names
    prefix = fitting.most_common(1)[0][0]
    return prefix, [name for name in names if name.startswith(prefix)]


def _hparam_settings(hparams: Any) -> dict[str, Any]:
    """GPTConfig settings in ``hyper_parameters`` (top level, else one level down); {} when none."""
    if not isinstance(hparams, Mapping):
        return {}
    candidates = [hparams, *(value for value in list(hparams.values())[:64] if isinstance(value, Mapping))]
    for candidate in candidates:
        settings = clean_model_settings(candidate)
        if {"n_layer", "n_head", "n_embd"} & set(settings):
            return settings
    return {}

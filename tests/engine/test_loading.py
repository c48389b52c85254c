"""load_model_weights: what loads, what is refused, and that a refused load changes nothing."""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import random
import struct
import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine.loading_fixtures import (
    METRICS,
    TIMESTAMP,
    assert_same_weights,
    assert_unchanged,
    full_checkpoint,
    save_full,
    save_legacy,
    snapshot,
    tiny_gpt,
)
from utils.training.engine.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NotACheckpointError,
    UnsafeCheckpointError,
)
from utils.training.engine.loading import LoadReport, ModelMoveError, load_model_weights
from utils.training.engine.torchfile import TorchFile


class _CreatesFile:
    """Unpickling this opens (creates) a file: the classic malicious-checkpoint payload."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


class _Harmless:
    """A plain class instance: not allowed by weights_only, harmless when trusted."""

    def __init__(self) -> None:
        self.note = "hello"


@pytest.fixture
def trained(tmp_path):
    """A source model, its checkpoint file, and a differently initialised target model."""
    source = tiny_gpt(seed=1)
    return source, save_full(tmp_path / "ckpt.pt", source), tiny_gpt(seed=2)


class TestLoadModelWeightsHappyPath:
    def test_weights_are_bit_exact_and_model_in_eval_on_cpu(self, trained):
        source, path, target = trained
        report = load_model_weights(target, path, device="cpu")
        assert_same_weights(target, source.state_dict())
        assert not target.training
        assert (report.verified, report.device, report.mode) == (True, "cpu", "eval")

    def test_report_carries_the_checkpoint_metadata(self, trained):
        _, path, target = trained
        report = load_model_weights(target, path, device="cpu")
        assert (report.kind, report.epoch, report.global_step, report.timestamp) == ("full", 9, 9, TIMESTAMP)
        assert report.metrics == METRICS
        assert report.config["model"] == target.config.to_dict()
        assert report.warnings == [] and report.nonfinite_tensors == []

    def test_report_counts_tied_weights_once(self, trained):
        _, path, target = trained
        report = load_model_weights(target, path, device="cpu")
        total = sum(p.numel() for p in target.parameters())
        assert (report.total_params, report.trainable_params, report.frozen_params) == (total, total, 0)
        assert report.model_size_mb == pytest.approx(total * 4 / 2**20)
        assert report.dtype_label == "FP32"
        assert report.tensors_loaded == len(list(target.parameters())) + len(list(target.buffers()))

    def test_architecture_preview_lists_first_five_parameters(self, trained):
        _, path, target = trained
        report = load_model_weights(target, path, device="cpu")
        names = [name for name, _ in target.named_parameters()]
        assert [entry[0] for entry in report.architecture_preview] == names[:5]
        assert report.architecture_preview[0] == ("transformer.wte.weight", [256, 64], "cpu")
        assert report.named_parameter_count == len(names)

    def test_frozen_parameters_are_counted(self, trained):
        _, path, target = trained
        target.transformer.wpe.weight.requires_grad_(False)
        report = load_model_weights(target, path, device="cpu")
        assert report.frozen_params == target.transformer.wpe.weight.numel()

    def test_default_device_is_cpu_without_cuda(self, trained, monkeypatch):
        _, path, target = trained
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert load_model_weights(target, path).device == "cpu"

    def test_cuda_without_a_gpu_is_refused_before_touching_the_model(self, trained, monkeypatch):
        _, path, target = trained
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        before = snapshot(target)
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            load_model_weights(target, path, device="cuda")
        assert_unchanged(target, before)

    @pytest.mark.parametrize(
        ("device", "message"),
        [
            ("meta", "holds no data"),
            ("cuda:abc", "is not a device name"),
            ("xpu", "has no xpu device"),
            ("mps", "has no mps device"),
        ],
    )
    def test_a_device_this_machine_lacks_is_refused_before_reading(self, trained, device, message):
        _, path, target = trained
        before = snapshot(target)
        with pytest.raises(ValueError, match=message):
            load_model_weights(target, path, device=device)
        assert_unchanged(target, before)
        assert next(target.parameters()).device.type == "cpu"

    def test_a_gpu_index_beyond_the_count_is_refused(self, trained, monkeypatch):
        _, path, target = trained
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        with pytest.raises(ValueError, match=r"'cuda:3' was asked for, but this machine has 1 GPU"):
            load_model_weights(target, path, device="cuda:3")

    def test_a_move_that_fails_in_any_way_leaves_the_model_in_place(self, trained, monkeypatch):
        _, path, target = trained
        real_to = torch.nn.Module.to

        def failing_to(module, *args, **kwargs):
            if args and str(args[0]) == "cpu" and not getattr(failing_to, "failed", False):
                failing_to.failed = True
                raise AssertionError("Torch not compiled with XPU enabled")  # as a half-built backend does
            return real_to(module, *args, **kwargs)

        monkeypatch.setattr(torch.nn.Module, "to", failing_to)
        with pytest.raises(ModelMoveError, match="AssertionError: Torch not compiled"):
            load_model_weights(target, path, device="cpu")
        assert next(target.parameters()).device.type == "cpu"

    def test_verify_false_skips_the_check(self, trained):
        source, path, target = trained
        report = load_model_weights(target, path, device="cpu", verify=False)
        assert report.verified is None
        assert_same_weights(target, source.state_dict())

    def test_path_with_spaces_and_non_ascii(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        folder = tmp_path / "mes checkpoints é"
        folder.mkdir()
        report = load_model_weights(target, save_full(folder / "modèle 1.pt", source), device="cpu")
        assert report.verified and report.name == "modèle 1.pt"

    def test_report_holds_no_tensors(self, trained):
        _, path, target = trained
        report = load_model_weights(target, path, device="cpu")
        values = [getattr(report, f.name) for f in dataclasses.fields(LoadReport)]
        assert not any(isinstance(v, torch.Tensor) for v in values)  # nothing keeps the file mapped


class TestLoadModelWeightsKinds:
    def test_legacy_checkpoint(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        report = load_model_weights(target, save_legacy(tmp_path / "old.pt", source), device="cpu")
        assert (report.kind, report.epoch, report.global_step, report.config) == ("legacy", 4, 40, None)
        assert_same_weights(target, source.state_dict())

    def test_bare_state_dict(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        torch.save(source.state_dict(), tmp_path / "bare.pt")
        report = load_model_weights(target, tmp_path / "bare.pt", device="cpu")
        assert (report.kind, report.epoch, report.metrics["val_loss"]) == ("bare", None, None)
        assert_same_weights(target, source.state_dict())

    def test_legacy_pre_zip_serialisation_loads(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        torch.save(source.state_dict(), tmp_path / "old.pt", _use_new_zipfile_serialization=False)
        assert load_model_weights(target, tmp_path / "old.pt", device="cpu").verified
        assert_same_weights(target, source.state_dict())

    def test_only_the_weights_are_read(self, trained, monkeypatch):
        """The optimizer state is in the file but never materialised: only the model's tensors are."""
        source, path, target = trained
        read = []
        original = TorchFile.tensor
        monkeypatch.setattr(TorchFile, "tensor", lambda self, stub: read.append(stub) or original(self, stub))
        load_model_weights(target, path, device="cpu")
        distinct_weights = len({p.data_ptr() for p in source.state_dict().values()})
        assert len(read) == distinct_weights

    def test_model_state_dict_is_built_once(self, trained):
        source, path, target = trained
        calls = []
        original = target.state_dict
        target.state_dict = lambda *a, **k: calls.append(1) or original(*a, **k)
        assert load_model_weights(target, path, device="cpu").verified
        assert len(calls) == 1
        assert_same_weights(target, source.state_dict())


class TestLoadModelWeightsOddMetadata:
    def _legacy(self, tmp_path, source, **fields):
        legacy = {"model_state_dict": source.state_dict(), "epoch": 1, "global_step": 2, **fields}
        torch.save(legacy, tmp_path / "odd.pt")
        return tmp_path / "odd.pt"

    @pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
    def test_non_finite_counters_load_as_unknown(self, tmp_path, bad):
        source, target = tiny_gpt(1), tiny_gpt(2)
        report = load_model_weights(
            target, self._legacy(tmp_path, source, epoch=bad, global_step=bad), device="cpu"
        )
        assert (report.epoch, report.global_step) == (None, None) and report.verified
        assert_same_weights(target, source.state_dict())

    def test_metrics_stored_as_tensors_are_read(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        metrics = {"val_loss": torch.tensor(1.5), "train_loss": torch.tensor(math.nan)}
        report = load_model_weights(target, self._legacy(tmp_path, source, metrics=metrics), device="cpu")
        assert report.metrics == {"train_loss": None, "val_loss": 1.5, "learning_rate": None}

    def test_odd_metadata_and_a_mismatch_leave_the_model_unchanged(self, tmp_path):
        source, target = tiny_gpt(1, n_layer=1), tiny_gpt(2)
        before = snapshot(target)
        with pytest.raises(ArchitectureMismatchError, match="do not fit the model"):
            load_model_weights(target, self._legacy(tmp_path, source, epoch=math.inf), device="cpu")
        assert_unchanged(target, before)


class TestLoadModelWeightsPrefixes:
    @pytest.mark.parametrize("prefixes", [["module."], ["_orig_mod."], ["module.", "_orig_mod."]])
    def test_wrapper_prefixes_are_stripped_and_reported(self, tmp_path, prefixes):
        source, target = tiny_gpt(1), tiny_gpt(2)
        prefix = "".join(prefixes)
        state = {prefix + name: tensor for name, tensor in source.state_dict().items()}
        report = load_model_weights(target, save_full(tmp_path / "p.pt", source, state), device="cpu")
        assert report.stripped_prefixes == prefixes
        assert_same_weights(target, source.state_dict())

    @pytest.mark.parametrize("wrap", [torch.nn.DataParallel, torch.compile])
    def test_wrapped_model_is_loaded_through_its_inner_module(self, trained, wrap):
        source, path, target = trained
        report = load_model_weights(wrap(target), path, device="cpu")
        assert report.model_was_wrapped and report.stripped_prefixes == []
        assert_same_weights(target, source.state_dict())

    def test_real_submodule_named_module_keeps_its_name(self, tmp_path):
        source = torch.nn.Sequential()
        source.add_module("module", torch.nn.Linear(3, 3))
        target = torch.nn.Sequential()
        target.add_module("module", torch.nn.Linear(3, 3))
        torch.save(source.state_dict(), tmp_path / "m.pt")
        report = load_model_weights(target, tmp_path / "m.pt", device="cpu")
        assert report.stripped_prefixes == []
        assert_same_weights(target, source.state_dict())


class TestLoadModelWeightsDtypes:
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_precision_checkpoint_converts_into_float32_model(self, tmp_path, dtype):
        source, target = tiny_gpt(1), tiny_gpt(2)
        state = {name: tensor.to(dtype) for name, tensor in source.state_dict().items()}
        report = load_model_weights(target, save_full(tmp_path / "h.pt", source, state), device="cpu")
        assert report.verified and report.dtype_label == "FP32"
        name = str(dtype).replace("torch.", "")
        assert {(src, dst) for _, src, dst in report.dtype_conversions} == {(name, "float32")}
        assert_same_weights(target, state)

    def test_nan_and_inf_tensors_load_with_a_warning_naming_them(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        state = source.state_dict()
        state["transformer.h.0.ln_1.weight"][3] = math.nan
        state["lm_head.weight"][0, 0] = math.inf  # tied to transformer.wte.weight
        report = load_model_weights(target, save_full(tmp_path / "n.pt", source, state), device="cpu")
        assert report.nonfinite_tensors == ["transformer.wte.weight", "transformer.h.0.ln_1.weight"]
        assert "transformer.h.0.ln_1.weight" in report.warnings[0] and report.verified
        assert report.warnings[0].startswith("2 tensors with NaN or Inf values")

    def test_one_nonfinite_tensor_is_named_in_the_singular(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        state = source.state_dict()
        state["transformer.ln_f.bias"][0] = math.nan
        report = load_model_weights(target, save_full(tmp_path / "n.pt", source, state), device="cpu")
        assert report.warnings[0].startswith("1 tensor with NaN or Inf values: transformer.ln_f.bias")

    def test_large_finite_values_are_not_reported_as_nonfinite(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        state = source.state_dict()
        state["transformer.wpe.weight"].fill_(3e38)  # the sum overflows, every value is finite
        report = load_model_weights(target, save_full(tmp_path / "big.pt", source, state), device="cpu")
        assert report.nonfinite_tensors == []


class TestLoadModelWeightsRefusals:
    """Every failure raises our own error and leaves every tensor of the model unchanged."""

    def _refused(self, target, path, error, match):
        before = snapshot(target)
        with pytest.raises(error, match=match):
            load_model_weights(target, path, device="cpu")
        assert_unchanged(target, before)
        assert target.training  # not even the mode changed

    def test_different_config_is_a_mismatch_with_diff_and_rebuild_line(self, tmp_path):
        path = save_full(tmp_path / "big.pt", tiny_gpt(1, n_layer=3))
        target = tiny_gpt(2)
        self._refused(target, path, ArchitectureMismatchError, "do not fit the model")
        with pytest.raises(ArchitectureMismatchError) as caught:
            load_model_weights(target, path, device="cpu")
        diff = caught.value.diff
        assert diff.unexpected and diff.config_differences == ["n_layer: checkpoint 3, model 2"]
        assert diff.rebuild_hint == f"model, load_report = build_model_from_checkpoint({str(path)!r})"

    def test_partial_fit_copies_nothing(self, tmp_path):
        """load_state_dict(strict=True) would copy the matching tensors before raising."""
        source, target = tiny_gpt(1), tiny_gpt(2)
        state = source.state_dict()
        state["transformer.ln_f.weight"] = torch.ones(65)  # the last tensor has the wrong shape
        path = save_full(tmp_path / "p.pt", source, state)
        self._refused(target, path, ArchitectureMismatchError, r"transformer.ln_f.weight: checkpoint \[65\]")

    def test_missing_and_unexpected_keys(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        state = dict(source.state_dict())
        state["extra.weight"] = state.pop("transformer.wpe.weight")
        self._refused(
            target, save_full(tmp_path / "k.pt", source, state), ArchitectureMismatchError, "1 missing"
        )

    def test_integer_tensor_into_float_parameter(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        state = dict(source.state_dict())
        state["transformer.ln_f.bias"] = torch.zeros(64, dtype=torch.int64)
        path = save_full(tmp_path / "i.pt", source, state)
        self._refused(target, path, ArchitectureMismatchError, "checkpoint int64 vs model float32")

    def test_tied_tensor_stored_twice_with_different_values(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        state = {name: tensor.clone() for name, tensor in source.state_dict().items()}
        state["lm_head.weight"] += 1.0
        self._refused(target, save_full(tmp_path / "t.pt", source, state), ArchitectureMismatchError, "Tied")

    def test_malicious_pickle_never_runs(self, tmp_path):
        victim = tmp_path / "pwned.txt"
        torch.save(
            {"model_state_dict": tiny_gpt(1).state_dict(), "x": _CreatesFile(str(victim))}, tmp_path / "e.pt"
        )
        self._refused(tiny_gpt(2), tmp_path / "e.pt", UnsafeCheckpointError, "would run code")
        assert not victim.exists()

    def test_malicious_legacy_format_pickle_never_runs(self, tmp_path):
        victim = tmp_path / "pwned.txt"
        torch.save({"x": _CreatesFile(str(victim))}, tmp_path / "e.pt", _use_new_zipfile_serialization=False)
        self._refused(tiny_gpt(2), tmp_path / "e.pt", UnsafeCheckpointError, "trust_pickle=True")
        assert not victim.exists()

    def test_trust_pickle_is_the_documented_opt_in(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        torch.save(full_checkpoint(source) | {"x": _Harmless()}, tmp_path / "o.pt")
        with pytest.raises(UnsafeCheckpointError, match=r"trust_pickle=True"):
            load_model_weights(target, tmp_path / "o.pt", device="cpu")
        assert load_model_weights(target, tmp_path / "o.pt", device="cpu", trust_pickle=True).verified
        assert_same_weights(target, source.state_dict())

    def test_trusted_whole_model_pickle_loads_its_state_dict(self, tmp_path):
        source, target = tiny_gpt(1), tiny_gpt(2)
        torch.save(source, tmp_path / "whole.pt")
        report = load_model_weights(target, tmp_path / "whole.pt", device="cpu", trust_pickle=True)
        assert report.kind == "module"
        assert_same_weights(target, source.state_dict())


class TestLoadModelWeightsBadFiles:
    def _refused(self, path, error, match):
        target = tiny_gpt(2)
        before = snapshot(target)
        with pytest.raises(error, match=match) as caught:
            load_model_weights(target, path, device="cpu")
        assert_unchanged(target, before)
        assert caught.value.path == str(path) and caught.value.fix
        return caught.value

    def test_missing_file(self, tmp_path):
        self._refused(tmp_path / "nope.pt", CheckpointNotFoundError, "does not exist")

    def test_dangling_symlink(self, tmp_path):
        (tmp_path / "link.pt").symlink_to(tmp_path / "gone.pt")
        self._refused(tmp_path / "link.pt", CheckpointNotFoundError, "does not exist")

    def test_directory(self, tmp_path):
        self._refused(tmp_path, NotACheckpointError, "is a folder")

    def test_empty_file(self, tmp_path):
        (tmp_path / "e.pt").write_bytes(b"")
        error = self._refused(tmp_path / "e.pt", CorruptCheckpointError, r"empty \(0 bytes\)")
        assert "interrupted" in error.fix

    @pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.95, 0.999])
    def test_truncated_file(self, trained, fraction):
        _, path, _ = trained
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
        error = self._refused(path, CorruptCheckpointError, "truncated")
        assert "Colab disconnect" in error.fix

    def test_random_bytes(self, tmp_path):
        (tmp_path / "r.pt").write_bytes(random.Random(0).randbytes(4096))
        self._refused(tmp_path / "r.pt", CorruptCheckpointError, "damaged or not a checkpoint")

    def test_zip_that_is_not_a_torch_file(self, tmp_path):
        with zipfile.ZipFile(tmp_path / "z.pt", "w") as archive:
            archive.writestr("notes.txt", "hello")
        self._refused(tmp_path / "z.pt", CorruptCheckpointError, "not one written by torch.save")

    @pytest.mark.parametrize(
        "obj, found",
        [
            ([1, 2], "a list"),
            (torch.zeros(3), "a single tensor"),
            ({"epoch": 3}, "'epoch'"),
            ({}, "empty dict"),
            ({"model_state_dict": {}, "epoch": 3}, "an empty 'model_state_dict'"),
        ],
    )
    def test_valid_torch_file_without_weights(self, tmp_path, obj, found):
        torch.save(obj, tmp_path / "x.pt")
        self._refused(tmp_path / "x.pt", NotACheckpointError, found)

    def test_unreadable_file(self, trained, monkeypatch):
        _, path, _ = trained

        def refuse(*args, **kwargs):  # chmod 0 does not stop root, so refuse the open itself
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(os, "open", refuse)
        self._refused(path, CheckpointError, "cannot be read: Permission denied")

    def test_a_cut_file_is_named_truncated(self, trained):
        _, path, _ = trained
        path.write_bytes(path.read_bytes()[:100])
        with pytest.raises(CorruptCheckpointError, match="is truncated"):
            load_model_weights(tiny_gpt(2), path, device="cpu")


@pytest.fixture(scope="module")
def small_file_bytes(tmp_path_factory):
    model = torch.nn.Linear(3, 2)
    path = tmp_path_factory.mktemp("fuzz") / "small.pt"
    torch.save({"model_state_dict": model.state_dict(), "epoch": 1}, path)
    return path.read_bytes()


class TestLoadModelWeightsFuzz:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_mutated_files_raise_only_checkpoint_errors(self, tmp_path, small_file_bytes, data):
        raw = bytearray(small_file_bytes)
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        raw = raw[: data.draw(st.integers(0, len(raw)))]
        path = tmp_path / "fuzz.pt"
        path.write_bytes(bytes(raw))
        target = torch.nn.Linear(3, 2)
        before = snapshot(target)
        try:
            load_model_weights(target, path, device="cpu")
        except CheckpointError:
            assert_unchanged(target, before)

    @pytest.mark.filterwarnings("ignore:Detected pickle protocol")
    def test_fuzz_corpus_includes_pickle_level_damage(self, small_file_bytes, tmp_path):
        """A damaged data.pkl inside an intact zip is still our error, not a raw pickle error."""
        with zipfile.ZipFile(tmp_path / "src.pt", "w") as out:
            out.writestr("archive/data.pkl", pickle.dumps([1, 2])[:-3])
            out.writestr("archive/version", "3\n")
        with pytest.raises(CheckpointError):
            load_model_weights(torch.nn.Linear(3, 2), tmp_path / "src.pt", device="cpu")


def _flip_bytes_of(path, members):
    """Flip one byte inside each named tensor member of a saved file, after it was written."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename.split("/", 1)[1] in members:
                # torch pads the local header's extra field to align the data: read its own lengths
                name_len, extra_len = struct.unpack_from("<2H", data, info.header_offset + 26)
                data[info.header_offset + 30 + name_len + extra_len + 3] ^= 0xFF
    path.write_bytes(bytes(data))


class TestCheckIntegrity:
    def test_intact_weights_pass_and_the_report_says_so(self, trained):
        _, path, target = trained
        assert load_model_weights(target, path, device="cpu", check_integrity=True).integrity_checked is True

    def test_every_damaged_tensor_is_named_and_nothing_is_copied(self, trained):
        _, path, target = trained
        _flip_bytes_of(path, {"data/0", "data/5", "data/9"})
        before = snapshot(target)
        with pytest.raises(CorruptCheckpointError, match=r"3 tensors fail the file's own CRC-32 checksum"):
            load_model_weights(target, path, device="cpu", check_integrity=True)
        assert_unchanged(target, before)

    def test_without_the_check_damage_inside_tensor_bytes_loads(self, trained):
        """What torch.load does too: the reason Cell 34 and resume check the checksums."""
        _, path, target = trained
        _flip_bytes_of(path, {"data/0"})
        assert load_model_weights(target, path, device="cpu").verified


class TestForeignFailuresBecomeOurs:
    def test_an_unexpected_exception_while_reading_names_the_file(self, trained, monkeypatch):
        _, path, target = trained
        from utils.training.engine.sources import native

        def odd(self, probe):
            raise TypeError("unhashable type: 'list'")

        monkeypatch.setattr(native.NativeSource, "read_record", odd)
        before = snapshot(target)
        with pytest.raises(
            CorruptCheckpointError, match=r"cannot be read \(TypeError: unhashable type"
        ) as caught:
            load_model_weights(target, path, device="cpu")
        assert caught.value.path == str(path)
        assert_unchanged(target, before)

    def test_a_layer_number_of_thousands_of_digits_is_a_name(self, tmp_path):
        source = tiny_gpt(1)
        state = source.state_dict()
        state[f"transformer.h.{'9' * 5000}.attn.bias"] = torch.ones(1)
        path = save_full(tmp_path / "digits.pt", source, state)
        with pytest.raises(ArchitectureMismatchError, match="1 unexpected"):
            load_model_weights(tiny_gpt(2), path, device="cpu")

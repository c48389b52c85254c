"""INIT_FROM (Cells 3, 11, 13): scratch, a local checkpoint, a hub name (downloader monkeypatched: nothing downloads)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from utils.data import get_tokenizer
from utils.model import GPTConfig, config_for_preset
from utils.notebook import init_from
from utils.notebook.init_from import (
    InitChoice,
    InitFromError,
    build_initial_model,
    choose_initial_model,
    download_from_hub,
)
from utils.training.engine import ArchitectureMismatchError, CheckpointError

BYTES = get_tokenizer("bytes")


def _hf_folder(folder, vocab_size=300):
    """A tiny GPT2LMHeadModel saved with save_pretrained; returns (folder, model)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab_size, n_positions=16, n_embd=8, n_layer=1, n_head=2, bos_token_id=None, eos_token_id=None)  # fmt: skip
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    return folder, model


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    return _hf_folder(tmp_path_factory.mktemp("init") / "tiny-gpt2")


class TestChooseInitialModel:
    def test_scratch_is_the_preset(self):
        choice = choose_initial_model("scratch", "tiny", BYTES)
        assert (choice.path, choice.config, choice.preset) == (None, config_for_preset("tiny"), "tiny")
        assert choose_initial_model("", "tiny", BYTES).path is None
        assert choice.state == "untrained"

    def test_a_local_folder_gives_the_config(self, hf_folder):
        folder, _ = hf_folder
        choice = choose_initial_model(str(folder), "tiny", BYTES)
        assert (choice.path, choice.origin) == (folder, "file")
        assert choice.config == GPTConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=8,
                                          dropout=0.1, activation="gelu_tanh")  # fmt: skip
        assert "MODEL_PRESET is not used" in "\n".join(choice.lines())
        assert choice.state == "pretrained"

    def test_a_hub_name_goes_through_the_downloader(self, hf_folder, monkeypatch):
        asked = []
        monkeypatch.setattr(init_from, "download_from_hub", lambda name: asked.append(name) or hf_folder[0])
        choice = choose_initial_model("gpt2", "tiny", BYTES)
        assert asked == ["gpt2"] and choice.origin == "hub"
        assert "downloaded from the Hugging Face hub" in choice.lines()[0]

    def test_a_missing_path_that_is_no_hub_name(self, tmp_path):
        with pytest.raises(InitFromError, match="no such file or folder, and not a Hugging Face hub name"):
            choose_initial_model(str(tmp_path / "nothing" / "ckpt.pt"), "tiny", BYTES)

    def test_a_model_with_fewer_rows_than_the_tokenizer_is_refused(self, tmp_path):
        folder, _ = _hf_folder(tmp_path / "small-vocab", vocab_size=100)
        with pytest.raises(InitFromError, match=r"(?s)100 token rows, but the 'bytes' tokenizer.*Fix:"):
            choose_initial_model(str(folder), "tiny", BYTES)

    def test_a_config_json_asking_for_an_absurd_vocabulary_is_refused(self, hf_folder, tmp_path):
        folder = tmp_path / "liar"
        shutil.copytree(hf_folder[0], folder)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "vocab_size": 50_000_000}))
        with pytest.raises(
            ArchitectureMismatchError, match="refused: the model settings ask for vocab_size=50,000,000"
        ):
            choose_initial_model(str(folder), "tiny", BYTES)

    def test_bytes_in_gpt2s_vocabulary_is_explained(self, tmp_path):
        folder, _ = _hf_folder(tmp_path / "gpt2-vocab", vocab_size=50257)
        choice = choose_initial_model(str(folder), "tiny", BYTES)
        assert any("TOKENIZER = 'gpt2'" in note for note in choice.notes)


class TestDownloadFromHub:
    def test_asks_for_the_config_and_the_safetensors_only(self, monkeypatch, tmp_path):
        import huggingface_hub

        calls = []
        monkeypatch.setattr(
            huggingface_hub, "snapshot_download", lambda **kw: calls.append(kw) or str(tmp_path)
        )
        assert download_from_hub("gpt2") == tmp_path
        assert calls == [{"repo_id": "gpt2", "allow_patterns": ["config.json", "model.safetensors"]}]

    def test_offline_gets_a_clear_message(self, monkeypatch):
        import huggingface_hub

        def offline(**kw):
            raise ConnectionError("Failed to resolve 'huggingface.co'")

        monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
        with pytest.raises(
            InitFromError, match=r"(?s)could not download it.*ConnectionError.*set INIT_FROM to its path"
        ):
            download_from_hub("gpt2")


class TestBuildInitialModel:
    def test_loads_the_weights_in_training_mode(self, hf_folder):
        folder, hf_model = hf_folder
        choice = choose_initial_model(str(folder), "tiny", BYTES)
        model, lines = build_initial_model(choice, "cpu")
        assert model.training and "from INIT_FROM (huggingface)" in lines[0]
        tokens = torch.randint(0, 300, (1, 16))
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(model(tokens)[0], hf_model(tokens).logits, rtol=0, atol=1e-5)

    def test_scratch_builds_the_preset(self):
        model, lines = build_initial_model(choose_initial_model("scratch", "tiny", BYTES), "cpu")
        assert model.config == config_for_preset("tiny") and "parameters on cpu" in lines[0]

    def test_a_config_that_no_longer_fits_is_refused_before_the_model_is_allocated(
        self, hf_folder, monkeypatch
    ):
        folder, _ = hf_folder
        choice = choose_initial_model(str(folder), "tiny", BYTES)
        choice = InitChoice(choice.setting, GPTConfig(**{**choice.config.to_dict(), "n_layer": 3}), folder)
        allocated = []
        monkeypatch.setattr(init_from, "GPT", lambda config: allocated.append(config))
        with pytest.raises(
            InitFromError,
            match=r"(?s)could not be loaded.*n_layer: the settings say 3, the file's tensors show 1",
        ):
            build_initial_model(choice, "cpu")
        assert allocated == []

    def test_the_engines_message_is_quoted_escaped(self, hf_folder, monkeypatch):
        folder, _ = hf_folder
        choice = choose_initial_model(str(folder), "tiny", BYTES)

        def failing(model, path, device):
            raise CheckpointError(path, "names shard 'x\x1b[2J\x1b[32m✅ loaded'", fix="download it again")

        monkeypatch.setattr(init_from, "load_model_weights", failing)
        with pytest.raises(InitFromError) as caught:
            build_initial_model(choice, "cpu")
        message = str(caught.value)
        assert "\x1b" not in message and "x\\x1b[2J\\x1b[32m✅ loaded" in message
        assert message.splitlines()[-1] == "Fix: download it again"  # the engine's lines kept

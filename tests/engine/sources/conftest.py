"""Foreign checkpoints made with the real tools, once per test session (importing them takes seconds).

* Hugging Face: a tiny ``GPT2LMHeadModel`` and its ``save_pretrained`` folder.
* PyTorch Lightning: one tiny epoch of ``Trainer.fit`` with ``ModelCheckpoint``, of a
  LightningModule holding our GPT as ``self.model`` (plus a buffer of its own).
* nanoGPT is not a package: ``nanogpt_files.py`` builds its ``ckpt.pt`` from the layout its
  ``train.py`` documents.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch

from utils.model import GPT, GPTConfig

# A GPT-2 small enough for a test: 64 tokens, 16 positions, 2 layers of width 16.
HF_SETTINGS = dict(vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2)
OUR_SETTINGS = dict(vocab_size=64, block_size=16, n_embd=16, n_layer=2, n_head=2, dropout=0.0)
LIGHTNING_SETTINGS = dict(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0)


def our_gpt(**overrides) -> GPT:
    """Our GPT with the tiny HF model's settings (GPT-2's activation unless overridden), in eval mode."""
    torch.manual_seed(1)
    return GPT(GPTConfig(**{**OUR_SETTINGS, "activation": "gelu_tanh", **overrides})).eval()


def logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(tokens)
    return out.logits if hasattr(out, "logits") else out[0]


@pytest.fixture(scope="session")
def tokens() -> torch.Tensor:
    return torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="session")
def hf_model():
    """A tiny GPT2LMHeadModel with random weights (its biases too), in eval mode."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**HF_SETTINGS, bos_token_id=None, eos_token_id=None)).eval()
    with torch.no_grad():  # weights large enough that GELU's two forms differ beyond 1e-5, biases not zero
        for name, parameter in model.named_parameters():
            parameter.normal_(1.0 if ".ln_" in name and name.endswith("weight") else 0.0, 0.3)
    return model


@pytest.fixture(scope="session")
def hf_folder(hf_model, tmp_path_factory) -> Path:
    """``save_pretrained``: config.json + model.safetensors (lm_head left out: tied)."""
    folder = tmp_path_factory.mktemp("hf") / "gpt2-tiny"
    hf_model.save_pretrained(folder)
    return folder


class _LitGPT:
    """Built lazily: a LightningModule class needs pytorch_lightning imported."""

    cls = None

    @classmethod
    def get(cls):
        if cls.cls is None:
            import pytorch_lightning as pl

            class LitGPT(pl.LightningModule):
                def __init__(self, **settings):
                    super().__init__()
                    self.save_hyperparameters()
                    self.model = GPT(GPTConfig(**settings))
                    self.register_buffer("tokens_seen", torch.zeros(1))  # the module's own, not the GPT's

                def training_step(self, batch, index):
                    return self.model(*batch)[1]

                def validation_step(self, batch, index):
                    self.log("val_loss", self.model(*batch)[1])

                def configure_optimizers(self):
                    return torch.optim.AdamW(self.parameters(), lr=1e-3)

            cls.cls = LitGPT
        return cls.cls


@pytest.fixture(scope="session")
def lightning_run(tmp_path_factory):
    """(checkpoint path, the trained LightningModule): one tiny epoch on the CPU with ModelCheckpoint."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.manual_seed(0)
    x = torch.randint(0, 32, (8, 8))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.roll(x, -1, 1)), batch_size=4
    )
    module = _LitGPT.get()(**LIGHTNING_SETTINGS)
    folder = tmp_path_factory.mktemp("lightning")
    callback = ModelCheckpoint(dirpath=folder, monitor="val_loss", save_top_k=1)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", callbacks=[callback], logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader, loader)
    (path,) = folder.glob("*.ckpt")
    return path, module.eval()

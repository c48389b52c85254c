"""INIT_FROM = a local Hugging Face folder, through training and the export, in a real kernel (issue 10).

The folder is a tiny GPT-2 made with transformers (256 tokens: the byte tokenizer fits it
exactly). The run fine-tunes it for one short epoch; its checkpoints must record where the
weights started, and the export cell's Hugging Face folder must load in transformers with
the trained model's logits.
"""

from __future__ import annotations

import re

import pytest
import torch

from .kernel import Kernel

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


def _cell_titled(kernel: Kernel, title: str) -> int:
    """The number of the code cell whose title holds ``title`` (cells after 35 may be renumbered)."""
    for cell in kernel.nb.cells:
        tags = [t for t in cell.get("metadata", {}).get("tags", []) if re.fullmatch(r"cell-\d+", t)]
        if tags and title in cell.source.splitlines()[0]:
            return int(tags[0].split("-")[1])
    raise KeyError(title)


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("init-from")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=256, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=None, eos_token_id=None)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(folder / "tiny-gpt2")
    with Kernel(INIT_FROM=str(folder / "tiny-gpt2"), EPOCHS=1, CHECKPOINT_DIR=str(folder / "ckpt"),
                OUTPUT_DIR=str(folder / "out")) as kernel:  # fmt: skip
        outputs = kernel.run_range(1, 32)
        export = _cell_titled(kernel, "Export weights")
        outputs[export] = kernel.run(export)
        kernel.code(
            "import torch\n_x = torch.randint(0, 256, (1, 64), generator=torch.Generator().manual_seed(1))\n"
            f"model.eval()\ntorch.save({{'x': _x, 'logits': model(_x)[0].detach()}}, {str(folder / 'ours.pt')!r})"
        )
    return folder, outputs, export


class TestInitFromInKernel:
    def test_cells_11_and_13_take_the_model_from_the_folder(self, fine_tuned):
        _, outputs, _ = fine_tuned
        assert "INIT_FROM" in outputs[11] and "MODEL_PRESET is not used" in outputs[11]
        assert "activation  gelu_tanh" in outputs[11]
        assert "from INIT_FROM (huggingface)" in outputs[13]

    def test_checkpoints_record_where_the_weights_started(self, fine_tuned):
        folder, outputs, _ = fine_tuned
        assert "Error" not in outputs[32]
        saved = torch.load(sorted((folder / "ckpt").glob("checkpoint_*.pt"))[-1], weights_only=True)
        assert saved["config"]["training"]["init_from"] == str(folder / "tiny-gpt2")
        assert saved["config"]["model"]["activation"] == "gelu_tanh"

    def test_the_export_loads_in_transformers_with_our_logits(self, fine_tuned):
        from transformers import GPT2LMHeadModel

        folder, outputs, export = fine_tuned
        assert "🤗" in outputs[export] and "✅ Read back as Hugging Face GPT-2" in outputs[export]
        ours = torch.load(folder / "ours.pt", weights_only=True)
        hf_model = GPT2LMHeadModel.from_pretrained(folder / "out" / "huggingface").eval()
        with torch.no_grad():
            torch.testing.assert_close(hf_model(ours["x"]).logits, ours["logits"], rtol=0, atol=1e-5)

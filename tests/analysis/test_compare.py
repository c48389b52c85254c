"""compare_checkpoints: loss, agreement and KL equal a direct computation; the user's model untouched."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from utils.data import get_tokenizer
from utils.training.analysis import compare_checkpoints
from utils.training.engine.errors import CheckpointNotFoundError

from .conftest import tiny_model


def _direct(paths, batches):
    """Per path: (mean loss, agreement with paths[0], mean KL(paths[0] || path)) the plain way."""
    logps = []
    for path in paths:
        model = tiny_model(seed=99).eval()
        model.load_state_dict(torch.load(path, weights_only=True)["model_state_dict"])
        with torch.no_grad():
            logps.append(torch.cat([F.log_softmax(model(x)[0].double(), -1) for x, _ in batches]))
    targets = torch.cat([y for _, y in batches])
    results = []
    for logp in logps:
        loss = -logp.gather(-1, targets.unsqueeze(-1)).mean()
        agree = (logp.argmax(-1) == logps[0].argmax(-1)).double().mean()
        kl = (logps[0].exp() * (logps[0] - logp)).sum(-1).mean()
        results.append((float(loss), float(agree), float(kl)))
    return results


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


class TestCompareCheckpoints:
    def test_numbers_equal_a_direct_computation(self, model, three_files, batches):
        report = compare_checkpoints(model, three_files, batches, out=None)
        got = [(row.val_loss, row.agreement, row.kl) for row in report.rows]
        for (loss, agree, kl), (d_loss, d_agree, d_kl) in zip(
            got, _direct(three_files, batches), strict=True
        ):
            assert (
                loss == pytest.approx(d_loss, rel=1e-5)
                and agree == d_agree
                and kl == pytest.approx(d_kl, rel=1e-4)
            )
        assert [row.path for row in report.rows] == three_files
        assert report.rows[0].agreement == 1.0 and report.rows[0].kl == 0.0 and report.rows[2].kl > 0
        assert report.rows[1].perplexity == pytest.approx(torch.tensor(report.rows[1].val_loss).exp().item())
        assert report.tokens == sum(y.numel() for _, y in batches)

    def test_the_users_model_keeps_its_weights_mode_and_gradients(self, model, three_files, batches):
        model.train()
        model(batches[0][0], batches[0][1])[1].backward()
        before, grads = _state(model), [p.grad.clone() for p in model.parameters()]
        compare_checkpoints(model, three_files, batches, prompt=[1, 2, 3], max_new_tokens=4, out=None)
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before) and model.training
        assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))

    def test_windows_give_the_same_numbers_with_more_loads(self, model, three_files, batches):
        whole = compare_checkpoints(model, three_files, batches, out=None)
        windowed = compare_checkpoints(model, three_files, batches, reference_budget_bytes=1, out=None)
        assert (whole.windows, whole.loads) == (1, 3)
        assert (windowed.windows, windowed.loads) == (3, 9)  # one batch per window
        for a, b in zip(whole.rows, windowed.rows, strict=True):
            assert (a.val_loss, a.agreement) == (b.val_loss, b.agreement) and a.kl == pytest.approx(
                b.kl, rel=1e-9
            )

    def test_same_prompt_and_seed_sampled_from_each_checkpoint(self, model, three_files, batches):
        tokenizer = get_tokenizer(
            "bytes"
        )  # the tiny test model knows ids 0-63 only: a prompt of two low bytes
        report = compare_checkpoints(
            model,
            three_files,
            batches,
            prompt="\x05\x06",
            tokenizer=tokenizer,
            max_new_tokens=6,
            seed=3,
            out=None,
        )
        own = tiny_model(seed=99)
        own.load_state_dict(torch.load(three_files[1], weights_only=True)["model_state_dict"])
        expected = own.generate(torch.tensor([[5, 6]]), 6, temperature=0.8, top_k=40,
                                generator=torch.Generator().manual_seed(3))  # fmt: skip
        assert report.rows[1].sample == tokenizer.decode(expected[0].tolist())
        assert all(row.sample.startswith("\x05\x06") for row in report.rows)

    def test_prints_one_table_row_per_checkpoint_and_the_samples(self, model, three_files, batches):
        printed = []
        compare_checkpoints(model, three_files, batches, prompt=[5], max_new_tokens=3, out=printed.append)
        text = printed[0]
        assert "val_loss" in text and "KL nats/token" in text and f"{three_files[0].name}  (ref)" in text
        assert (
            all(path.name in text for path in three_files) and "Same prompt [5], seed 0, 3 new tokens" in text
        )

    def test_a_bad_file_raises_and_changes_nothing(self, model, three_files, batches, tmp_path):
        before = _state(model)
        with pytest.raises(CheckpointNotFoundError, match="missing.pt: does not exist"):
            compare_checkpoints(model, [three_files[0], tmp_path / "missing.pt"], batches, out=None)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            (dict(paths=[]), "needs at least one checkpoint path"),
            (dict(batches=[]), r"needs at least one \(x, y\) batch"),
            (dict(prompt="hi"), "a text prompt needs a tokenizer"),
            (dict(prompt=[1], max_new_tokens=-1), "max_new_tokens must be >= 0, got -1"),
        ],
    )
    def test_bad_arguments(self, model, three_files, batches, kwargs, message):
        arguments = dict(paths=three_files, batches=batches) | kwargs
        with pytest.raises(ValueError, match=message):
            compare_checkpoints(
                model, arguments.pop("paths"), arguments.pop("batches"), out=None, **arguments
            )

"""Edits and the kernel wrappers: an edit is never dropped, and autograd's recomputation of a
checkpointed forward is edited as the forward was (so the gradients are the edited run's)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import seqacts
from seqacts.capture.calls import LayerCall


class Checkpointed(nn.Module):
    def __init__(self, use_checkpoint: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.LSTM(3, 4, num_layers=2, batch_first=True)
        self.use_checkpoint = use_checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint:
            return checkpoint(lambda v: self.rnn(v)[0], x, use_reentrant=False)
        return self.rnn(x)[0]


def _grads(use_checkpoint: bool) -> tuple[torch.Tensor, torch.Tensor]:
    model = Checkpointed(use_checkpoint).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3),
                    requires_grad=True)
    with seqacts.intervene(model, seqacts.ablate("rnn.l0", [1, 2], time=slice(2, 5))):
        y = model(x)
        y.square().sum().backward()
    assert x.grad is not None
    return y.detach(), x.grad


def test_checkpoint_recomputation_is_edited_like_the_forward() -> None:
    y_plain, g_plain = _grads(False)
    y_ckpt, g_ckpt = _grads(True)
    torch.testing.assert_close(y_ckpt, y_plain, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_ckpt, g_plain, rtol=0, atol=1e-12)


def test_an_editor_failure_reaches_the_user_instead_of_an_unedited_result(monkeypatch) -> None:
    model = nn.GRU(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)

    def broken(call: LayerCall) -> None:
        raise RuntimeError("editor broke")

    with seqacts.intervene(model, seqacts.ablate("l0", 0)) as active:
        monkeypatch.setattr(active, "run_layer", broken)
        with pytest.raises(RuntimeError, match="editor broke"):
            model(x)
    assert torch._VF.gru is getattr(torch._VF.gru, "__wrapped__", torch._VF.gru)

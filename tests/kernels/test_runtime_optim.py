"""kernels.runtime.optim: the closure half of torch's Optimizer.step contract."""

from __future__ import annotations

import torch

from kernels.runtime.optim import closure_loss


def test_no_closure_no_loss() -> None:
    assert closure_loss(None) is None


def test_closure_runs_with_gradients_on_inside_no_grad() -> None:
    w = torch.ones(3, requires_grad=True)

    def closure() -> torch.Tensor:
        loss = (w * 2).sum()
        loss.backward()
        return loss

    with torch.no_grad():  # where an optimizer's step runs
        loss = closure_loss(closure)
    assert float(loss) == 6.0 and torch.equal(w.grad, torch.full((3,), 2.0))

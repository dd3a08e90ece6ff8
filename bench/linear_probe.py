"""A linear probe: how well a logistic regression reads an attribute from frozen features (the ceiling they allow).

Hand-written in torch (L-BFGS on the L2-regularised mean log-loss, a few dozen lines) because scikit-learn is not
a dependency of this project and the probe needs nothing else from it. The regularisation strength is chosen by
k-fold cross-validation on the training set only.
"""

from __future__ import annotations

import torch

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)
FOLDS = 5


def summary(features: torch.Tensor) -> torch.Tensor:
    """One vector per clip/picture/video: mean and std over the time/token axis (music: per encoder layer).

    music (L, T, D) -> 2 L D; image / video tokens (N, D) -> 2 D.
    """
    x = features.float()
    return torch.cat([x.mean(-2).flatten(), x.std(-2, unbiased=False).flatten()])


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(0), train.std(0, unbiased=False).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def fit(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of a logistic regression of y (0/1) on x minimising mean log-loss + l2/2 |w|^2."""
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    x, y = x.double(), y.double()
    optimizer = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + 0.5 * l2 * w.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), b.detach()


def _accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
              l2: float) -> float:
    train_x, test_x = _standardise(train_x, test_x)
    w, b = fit(train_x, train_y, l2)
    return float(((test_x.double() @ w + b > 0).long() == test_y).double().mean())


def _best_l2(x: torch.Tensor, y: torch.Tensor) -> float:
    folds = torch.arange(len(y)) % FOLDS
    scores = []
    for l2 in L2_GRID:
        scores.append(sum(_accuracy(x[folds != k], y[folds != k], x[folds == k], y[folds == k], l2)
                          for k in range(FOLDS)))
    return L2_GRID[max(range(len(L2_GRID)), key=lambda i: scores[i])]


def probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                   test_y: torch.Tensor) -> float:
    """Held-out accuracy of the probe trained on (train_x, train_y), its L2 chosen by cross-validation."""
    if set(train_y.tolist()) != {0, 1}:
        raise ValueError("the probe needs both classes (0 and 1) in its training labels")
    return _accuracy(train_x, train_y, test_x, test_y, _best_l2(train_x, train_y))

"""A tuned ``manual_backward`` for notebook 4: the bench's yardstick, not a model answer.

The model answer in solutions/backprop_ninja/4_full_training.ipynb reads as the derivation
(``F.softmax``, ``dlogits[range(n), Yb] -= 1``, ``/= n``; notebook 3's boxed formula;
``(1 - h**2) * dh``) and stays so: it is what a student should write. This is the same
gradient written for speed, as the solution read until 2026-12-03 (commit 3f37023 replaced
it): one ``scatter_`` for the indexing idiom, batchnorm's constants folded into
``alpha=``/``value=`` and its two sums shared with ``dbngain``/``dbnbias``, the tanh
backward as one ``addcmul``. The bench times the course's loop with both (figure 1t), so the
table separates what the loop costs from what the answer costs; tests/test_bench.py checks
that both give the same gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def manual_backward(params, cache, Xb, Yb):
    """All seven parameter gradients of the loss (the model answer's, to float rounding)."""
    n = Xb.shape[0]
    C, W1, W2, bngain = params["C"], params["W1"], params["W2"], params["bngain"]
    emb, embcat, bnraw, bnvar_inv, h, logits = (
        cache[k] for k in ("emb", "embcat", "bnraw", "bnvar_inv", "h", "logits")
    )
    # cross-entropy: softmax, minus 1 at the targets, / n
    dlogits = F.softmax(logits, dim=1)
    dlogits.scatter_(1, Yb.unsqueeze(1), -1.0, reduce="add")  # dlogits[i, Yb[i]] -= 1
    dlogits /= n
    # second linear layer
    dh = dlogits @ W2.T
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(0)
    # tanh: (1 - h**2) * dh as dh - (dh * h) * h, two operations instead of three
    dhpreact = torch.addcmul(dh, dh * h, h, value=-1.0)
    # batchnorm's scale and shift; their two sums are also the two sums of the boxed formula
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    # batchnorm, constants folded: bngain * bnvar_inv * (dhpreact - dbnbias / n - bnraw * dbngain / (n - 1))
    centred = torch.sub(dhpreact, dbnbias, alpha=1 / n)
    dhprebn = (bngain * bnvar_inv) * torch.addcmul(centred, bnraw, dbngain, value=-1 / (n - 1))
    # first linear layer
    dembcat = dhprebn @ W1.T
    dW1 = embcat.T @ dhprebn
    db1 = dhprebn.sum(0)
    # embedding: row i of demb adds into row Xb[i] of dC
    demb = dembcat.view(emb.shape)
    dC = torch.zeros_like(C).index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))
    return {"C": dC, "W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "bngain": dbngain, "bnbias": dbnbias}

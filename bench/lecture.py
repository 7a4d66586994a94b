"""The lecture's exercise-4 training loop, as Karpathy wrote it: the baseline of figure 1.

Copied from "Building makemore Part 4: Becoming a Backprop Ninja" (makemore_part4_backprop
.ipynb, exercise 4) with its solution filled in, so that "how much faster is the course's
loop" is measured against what a student who follows the lecture actually runs. Only three
things differ, none inside the timed loop body:

* the parameters and the generator come in as arguments (copies are trained), so that the
  course's loop can start from exactly the same point and draw exactly the same minibatches;
* ``max_steps`` is an argument, and the learning-rate switch stays at step 100,000;
* the every-10,000-steps ``print`` is left out (a bench prints one table).

Everything else — ``F.cross_entropy`` and ``hprebn.var`` in the forward pass, the fused
dlogits/dhprebn formulas, the Python double loop for dC, ``p.data += -lr * grad``,
``lossi.append(loss.log10().item())`` every step, torch's default thread count — is the
lecture's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lecture_training_loop(
    params: dict,
    Xtr: torch.Tensor,
    Ytr: torch.Tensor,
    *,
    max_steps: int,
    generator: torch.Generator,
    batch_size: int = 32,
) -> list[float]:
    """Train copies of ``params`` the lecture's way; return the per-step losses (not log10)."""
    g = generator
    C, W1, b1, W2, b2, bngain, bnbias = (
        params[name].clone() for name in ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")
    )
    parameters = [C, W1, b1, W2, b2, bngain, bnbias]
    for p in parameters:
        p.requires_grad = True

    n = batch_size  # convenience
    lossi = []

    # use this context manager for efficiency once your backward pass is written (TODO)
    with torch.no_grad():
        # kick off optimization
        for i in range(max_steps):
            # minibatch construct
            ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
            Xb, Yb = Xtr[ix], Ytr[ix]  # batch X,Y

            # forward pass
            emb = C[Xb]  # embed the characters into vectors
            embcat = emb.view(emb.shape[0], -1)  # concatenate the vectors
            # Linear layer
            hprebn = embcat @ W1 + b1  # hidden layer pre-activation
            # BatchNorm layer
            # -------------------------------------------------------------
            bnmean = hprebn.mean(0, keepdim=True)
            bnvar = hprebn.var(0, keepdim=True, unbiased=True)
            bnvar_inv = (bnvar + 1e-5) ** -0.5
            bnraw = (hprebn - bnmean) * bnvar_inv
            hpreact = bngain * bnraw + bnbias
            # -------------------------------------------------------------
            # Non-linearity
            h = torch.tanh(hpreact)  # hidden layer
            logits = h @ W2 + b2  # output layer
            loss = F.cross_entropy(logits, Yb)  # loss function

            # backward pass
            for p in parameters:
                p.grad = None
            # loss.backward() # use this for correctness comparisons, delete it later!

            # manual backprop! #swole_doge_meme
            # -----------------
            dlogits = F.softmax(logits, 1)
            dlogits[range(n), Yb] -= 1
            dlogits /= n
            # 2nd layer backprop
            dh = dlogits @ W2.T
            dW2 = h.T @ dlogits
            db2 = dlogits.sum(0)
            # tanh
            dhpreact = (1.0 - h**2) * dh
            # batchnorm backprop
            dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
            dbnbias = dhpreact.sum(0, keepdim=True)
            dhprebn = (
                bngain
                * bnvar_inv
                / n
                * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
            )
            # 1st layer
            dembcat = dhprebn @ W1.T
            dW1 = embcat.T @ dhprebn
            db1 = dhprebn.sum(0)
            # embedding
            demb = dembcat.view(emb.shape)
            dC = torch.zeros_like(C)
            for k in range(Xb.shape[0]):
                for j in range(Xb.shape[1]):
                    ix = Xb[k, j]
                    dC[ix] += demb[k, j]
            grads = [dC, dW1, db1, dW2, db2, dbngain, dbnbias]
            # -----------------

            # update
            lr = 0.1 if i < 100000 else 0.01  # step learning rate decay
            for p, grad in zip(parameters, grads):
                # p.data += -lr * p.grad # old way of cheems doge (using PyTorch grad from .backward())
                p.data += -lr * grad  # new way of swole doge TODO: enable

            # track stats
            lossi.append(loss.log10().item())

    return [10.0**v for v in lossi]

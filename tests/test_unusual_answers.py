"""Unusual but correct answers pass the notebook's visible test and the hidden one.

The diagnoses try known wrong formulas against a student's result; none of that may turn a
right answer into a wrong one. These are formulations students write that the model answers
do not use (einsum, one-hot products, explicit loops, cosh, logsumexp, the batchnorm
formula through a mean), each run exactly as the catalogue runs a mistake.
"""

import pytest

from backprop_ninja.maintainer.catalogue import Mistake, run

NB1, NB2, NB3 = "1_atomic_backprop", "2_fused_cross_entropy", "3_fused_batchnorm"
CORRECT = [
    (
        NB1,
        "test_dlogprobs",
        """
def grad_logprobs(logprobs, Yb):
    n = logprobs.shape[0]
    d = torch.zeros_like(logprobs)
    d[torch.arange(n), Yb] = -1.0 / n
    return d
""",
    ),
    (
        NB1,
        "test_dlogprobs",
        """
def grad_logprobs(logprobs, Yb):
    return -F.one_hot(Yb, logprobs.shape[1]).to(logprobs.dtype) / len(Yb)
""",
    ),
    (
        NB1,
        "test_dprobs",
        """
def grad_probs(probs, dlogprobs):
    return dlogprobs / probs
""",
    ),
    (
        NB1,
        "test_dprobs",
        """
def grad_probs(probs, dlogprobs):
    return probs.reciprocal() * dlogprobs
""",
    ),
    (
        NB1,
        "test_dcounts_sum_inv",
        """
def grad_counts_sum_inv(counts, dprobs):
    return torch.einsum("ij,ij->i", counts, dprobs).unsqueeze(1)
""",
    ),
    (
        NB1,
        "test_dcounts_sum",
        """
def grad_counts_sum(counts_sum, dcounts_sum_inv):
    return -dcounts_sum_inv / counts_sum**2
""",
    ),
    (
        NB1,
        "test_dcounts",
        """
def grad_counts(counts_sum_inv, dprobs, dcounts_sum):
    return dprobs * counts_sum_inv + dcounts_sum.expand_as(dprobs)
""",
    ),
    (
        NB1,
        "test_dlogit_maxes",
        """
def grad_logit_maxes(dnorm_logits):
    return -torch.sum(dnorm_logits, dim=1, keepdim=True)
""",
    ),
    (
        NB1,
        "test_dlogits",
        """
def grad_logits(logits, dnorm_logits, dlogit_maxes):
    d = dnorm_logits.clone()
    idx = logits.argmax(1)
    d[torch.arange(logits.shape[0]), idx] += dlogit_maxes.view(-1)
    return d
""",
    ),
    (
        NB1,
        "test_dh",
        """
def grad_h(W2, dlogits):
    return torch.matmul(dlogits, W2.transpose(0, 1))
""",
    ),
    (
        NB1,
        "test_dW2",
        """
def grad_W2(h, dlogits):
    return torch.einsum("ni,nj->ij", h, dlogits)
""",
    ),
    (
        NB1,
        "test_dhpreact",
        """
def grad_hpreact(hpreact, h, dh):
    return (1 - torch.tanh(hpreact)**2) * dh
""",
    ),
    (
        NB1,
        "test_dhpreact",
        """
def grad_hpreact(hpreact, h, dh):
    return dh / torch.cosh(hpreact)**2
""",
    ),
    (
        NB1,
        "test_dbnvar",
        """
def grad_bnvar(bnvar, dbnvar_inv):
    return -0.5 * (bnvar + 1e-5).pow(-1.5) * dbnvar_inv
""",
    ),
    (
        NB1,
        "test_dbndiff2",
        """
def grad_bndiff2(bndiff2, dbnvar):
    n = bndiff2.shape[0]
    return torch.ones_like(bndiff2) * dbnvar / (n - 1)
""",
    ),
    (
        NB1,
        "test_dC",
        """
def grad_C(C, Xb, demb):
    dC = torch.zeros_like(C)
    for k in range(Xb.shape[0]):
        for j in range(Xb.shape[1]):
            dC[Xb[k, j]] += demb[k, j]
    return dC
""",
    ),
    (
        NB1,
        "test_dC",
        """
def grad_C(C, Xb, demb):
    onehot = F.one_hot(Xb.view(-1), C.shape[0]).to(demb.dtype)
    return onehot.T @ demb.view(-1, C.shape[1])
""",
    ),
    (
        NB1,
        "test_demb",
        """
def grad_emb(emb, dembcat):
    return dembcat.reshape(emb.shape)
""",
    ),
    (
        NB2,
        "test_dlogits",
        """
def cross_entropy_backward(logits, Yb):
    n, V = logits.shape
    return (F.softmax(logits, dim=1) - F.one_hot(Yb, V)) / n
""",
    ),
    (
        NB2,
        "test_dlogits",
        """
def cross_entropy_backward(logits, Yb):
    p = torch.exp(logits - logits.logsumexp(1, keepdim=True))
    p[torch.arange(len(Yb)), Yb] -= 1
    return p / len(Yb)
""",
    ),
    (
        NB3,
        "test_dhprebn",
        """
def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    n = dhpreact.shape[0]
    dbnraw = bngain * dhpreact
    return bnvar_inv / n * (n * dbnraw - dbnraw.sum(0) - n / (n - 1) * bnraw * (dbnraw * bnraw).sum(0))
""",
    ),
    (
        NB3,
        "test_dhprebn",
        """
def batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv):
    n = dhpreact.shape[0]
    g = bngain * dhpreact
    return bnvar_inv * (g - g.mean(0, keepdim=True) - bnraw * (g * bnraw).sum(0, keepdim=True) / (n - 1))
""",
    ),
]


@pytest.mark.parametrize(
    ("notebook", "test", "code"),
    CORRECT,
    ids=[f"{test}-{i}" for i, (_, test, _) in enumerate(CORRECT)],
)
def test_an_unusual_correct_answer_gets_its_points(notebook, test, code):
    outcome = run(Mistake(notebook, f"correct {test}", test, (), code, "warn"))
    assert not outcome.visible_failed, outcome.message
    assert not outcome.hidden_failed, outcome.message

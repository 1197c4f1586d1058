# SPDX-License-Identifier: Apache-2.0
"""Plain-PyTorch float64 references (written from the formulas, autograd for gradients)."""
import torch


def trl_grpo_loss(lp, old, adv, mask, ref=None, beta=0.0, eps_lo=0.2, eps_hi=0.2, level="token"):
    """TRL GRPOTrainer loss_type "grpo": PPO clip per token (or GSPO sequence ratio), k3 KL,
    mean over sequences of the token mean."""
    log_ratio = lp - old
    if level == "sequence":
        log_ratio = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    r = torch.exp(log_ratio)
    a = adv.unsqueeze(-1)
    per_tok = -torch.min(r * a, torch.clamp(r, 1 - eps_lo, 1 + eps_hi) * a)
    if beta != 0.0:
        d = ref - lp
        per_tok = per_tok + beta * (torch.exp(d) - d - 1)
    if level == "sequence":
        per_tok = per_tok.expand_as(lp)
    return ((per_tok * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()


def dapo_loss(lp, old, adv, mask, eps_lo=0.2, eps_hi=0.28):
    r = torch.exp(lp - old)
    a = adv.unsqueeze(-1)
    per_tok = -torch.min(r * a, torch.clamp(r, 1 - eps_lo, 1 + eps_hi) * a)
    return (per_tok * mask).sum() / mask.sum().clamp(min=1.0)


def logprob_entropy(logits, ids, temperature=1.0):
    z = torch.log_softmax(logits / temperature, dim=-1)
    logp = z.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    ent = -(z.exp() * z).sum(-1)
    return logp, ent


def forward_kl(student, teacher, mask, T=1.0):
    p = torch.softmax(teacher / T, -1)
    lq = torch.log_softmax(student / T, -1)
    lp = torch.log_softmax(teacher / T, -1)
    tok = (p * (lp - lq)).sum(-1)
    return (tok * mask).sum() / mask.sum()


def reverse_kl(student, teacher, mask, T=1.0):
    lq = torch.log_softmax(student / T, -1)
    lp = torch.log_softmax(teacher / T, -1)
    tok = (lq.exp() * (lq - lp)).sum(-1)
    return (tok * mask).sum() / mask.sum()


def jsd(student, teacher, mask, beta=0.5, T=1.0):
    """Generalised JSD: beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q."""
    lq = torch.log_softmax(student / T, -1)
    lp = torch.log_softmax(teacher / T, -1)
    lm = torch.logsumexp(torch.stack([lp + torch.log(torch.tensor(beta, dtype=lp.dtype)),
                                      lq + torch.log(torch.tensor(1 - beta, dtype=lp.dtype))]), 0)
    tok = beta * (lp.exp() * (lp - lm)).sum(-1) + (1 - beta) * (lq.exp() * (lq - lm)).sum(-1)
    return (tok * mask).sum() / mask.sum()

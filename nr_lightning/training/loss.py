"""Causal-LM cross entropy fused with the LM head: the [tokens, vocab] logits are never kept.

HF's ``model(input_ids, labels=ids).loss`` materialises the logits (1024 x 49,152 fp32 = 201 MB for
one 4 x 256 batch of SmolLM2; 64 x 4096 tokens with a 32k vocabulary would be 34 GB) and keeps the
``log_softmax`` for the backward. Since the loss is a scalar, its gradient can be formed chunk by chunk
in the forward pass, ``dL/dz = softmax(z) - onehot(y)``, and pushed through the head right away:
only ``dL/dh`` (tokens x d) and, for a trainable head, ``dL/dW`` are kept. Same FLOPs as the
unfused backward (the activation-gradient GEMM moves into the forward), peak memory lower by about
twice the logits. The numbers equal HF's ``ForCausalLMLoss`` (shifted labels, mean over positions)
to float rounding; ``tests/training/test_fused_loss.py`` checks loss and gradients.

Used by :class:`nr_lightning.training.module.ExtensionModule` for the decoder families of
:func:`nr_lightning.evaluation.scoring.hidden_and_head` (``trainer.fused_loss``, default on); other
models keep the HF loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, target, softcap, chunk_rows):
        n = h.shape[0]
        need_h, need_w = h.requires_grad, weight.requires_grad
        need_b = bias is not None and bias.requires_grad
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if need_b else None
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        rows = torch.arange(min(chunk_rows, n), device=h.device)
        for c in range(0, n, chunk_rows):
            hc, tc = h[c:c + chunk_rows], target[c:c + chunk_rows]
            z = F.linear(hc, weight, bias).float()
            if softcap:
                t = torch.tanh(z / softcap)
                z = t * softcap
            lp = torch.log_softmax(z, dim=-1)
            r = rows[: hc.shape[0]]
            total += -lp[r, tc].double().sum()
            if need_h or need_w or need_b:
                g = lp.exp_()  # softmax, in place: lp is not needed any more
                g[r, tc] -= 1.0
                if softcap:
                    g.mul_(1.0 - t * t)
                g.div_(n)
                if need_h:
                    grad_h[c:c + chunk_rows] = (g.to(weight.dtype) @ weight).to(h.dtype)
                if need_w:
                    grad_w.addmm_(g.t(), hc.float())
                if need_b:
                    grad_b += g.sum(0)
        ctx.save_for_backward(*(x for x in (grad_h, grad_w, grad_b) if x is not None))
        ctx.flags = (need_h, need_w, need_b)
        ctx.dtypes = (h.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return (total / n).float()

    @staticmethod
    def backward(ctx, grad_out):
        saved = list(ctx.saved_tensors)
        grads = []
        for need, dtype in zip(ctx.flags, ctx.dtypes):
            grads.append((saved.pop(0) * grad_out).to(dtype) if need else None)
        return (*grads, None, None, None)


def linear_cross_entropy(h: torch.Tensor, head: torch.nn.Linear, target: torch.Tensor, *,
                         softcap: float | None = None, chunk_rows: int = 256) -> torch.Tensor:
    """Mean over rows of ``-log_softmax(head(h))[target]`` (optionally soft-capped like Gemma-2),
    computed ``chunk_rows`` rows at a time without keeping the logits. ``h``: (N, d), ``target``: (N,)."""
    if h.dim() != 2 or target.shape != h.shape[:1]:
        raise ValueError(f"h must be (N, d) and target (N,); got {tuple(h.shape)} and {tuple(target.shape)}")
    return _LinearCrossEntropy.apply(h, head.weight, head.bias, target, softcap, chunk_rows)


def causal_lm_loss(input_ids: torch.Tensor, fused) -> torch.Tensor:
    """HF-equivalent causal LM loss (``labels = input_ids``): position t predicts token t+1, mean over
    all ``B * (T - 1)`` predictions. ``fused`` = ``(decoder, head, softcap)`` from
    :func:`nr_lightning.evaluation.scoring.hidden_and_head`."""
    decoder, head, softcap = fused
    hidden = decoder(input_ids=input_ids).last_hidden_state[:, :-1]
    target = input_ids[:, 1:]
    return linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), head, target.reshape(-1), softcap=softcap)

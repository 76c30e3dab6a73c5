"""BatchNorm whose batch statistics are those of the global batch, over all training processes.

With DistributedDataParallel each process runs g on its own share of the
global batch.  A plain ``BatchNorm2d`` in training mode would normalise by
the mean and variance of that share only, so N processes would not train
the model one process trains on the whole batch.  ``torch.nn.SyncBatchNorm``
solves this on GPUs only (it refuses CPU tensors, hence gloo), so this module
does the same with plain collectives that work on every backend:

* forward: each process sums ``x`` and ``x²`` per channel over its items and
  pixels; one differentiable ``all_reduce`` gives the global sums and count,
  hence the global mean and (biased) variance that normalise every share;
  the running statistics are updated with the unbiased global variance,
  exactly as one ``BatchNorm2d`` on the whole batch would update them;
* backward: the ``all_reduce`` passes the gradients of the statistics back
  summed over the processes, so every process gets the gradient of its
  inputs with respect to the whole batch's loss.

In evaluation mode (validation, inference) it is plain batch norm with the
running statistics, and :func:`restore_batchnorm` turns it back into
``BatchNorm2d`` before the model is saved, so checkpoints do not change.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["GlobalBatchNorm2d", "restore_batchnorm", "synchronise_batchnorm"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes; the gradient of every process's input is the sum of all processes' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        total = grad.clone()
        dist.all_reduce(total, group=ctx.group)
        return total, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` over the union of every process's batch (see the module docstring).

    Input and output ``B×C×H×W``; same parameters and buffers as ``BatchNorm2d``.
    """

    group = None  # the process group (None: the default one)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        flat = x.float().transpose(0, 1).flatten(1)  # C×(B·H·W)
        local = torch.cat([flat.sum(1), (flat * flat).sum(1), flat.new_full((1,), flat.shape[1])])
        total = _AllReduceSum.apply(local, self.group)
        channels = self.num_features
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels:2 * channels] / count - mean * mean).clamp_min(0)
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach() * count / (count - 1).clamp_min(1))
        shape = (1, channels, 1, 1)
        out = (x.float() - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked += 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased_var.to(self.running_var.dtype), alpha=factor)


def _swap(module: nn.Module, make) -> nn.Module:
    for name, child in module.named_children():
        replacement = make(child)
        if replacement is not None:
            setattr(module, name, replacement)
        else:
            _swap(child, make)
    return module


def _copy_norm(source: nn.BatchNorm2d, cls) -> nn.BatchNorm2d:
    norm = cls(source.num_features, source.eps, source.momentum, source.affine, source.track_running_stats)
    tensors = list(source.parameters()) + list(source.buffers())
    if tensors:
        norm = norm.to(tensors[0].device)
    norm.load_state_dict(source.state_dict())
    norm.train(source.training)
    for mine, theirs in zip(norm.parameters(), source.parameters()):
        mine.requires_grad_(theirs.requires_grad)
    return norm


def synchronise_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` inside ``module`` (in place) by a :class:`GlobalBatchNorm2d` with its state."""
    return _swap(module, lambda m: _copy_norm(m, GlobalBatchNorm2d) if type(m) is nn.BatchNorm2d else None)


def restore_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`synchronise_batchnorm`: plain ``BatchNorm2d`` layers with the trained state."""
    return _swap(module, lambda m: _copy_norm(m, nn.BatchNorm2d) if type(m) is GlobalBatchNorm2d else None)


"""BatchNorm over the global batch under torchrun: the N-process step normalises with the same
batch statistics as the one-process step.

Why not just `nn.SyncBatchNorm.convert_sync_batchnorm`:
- torch's converter turns timm's `BatchNormAct2d` (BN + activation in one layer: EfficientNet,
  ResNet, ...) into a bare SyncBatchNorm and drops the activation. On GPUs the layers become
  torch's SyncBatchNorm or, for BatchNormAct2d, timm's SyncBatchNormAct, which keeps it.
- torch's SyncBatchNorm trains on GPUs only (and DDP refuses it in a CPU model). On the CPU
  (gloo) a layer keeps its class's behaviour with a synchronised training forward added, with
  the statistics of all ranks' batches (`_synced_norm`), so a two-process CPU run trains as one.
Layers are converted by exact type; any other BatchNorm subclass (whose forward may do more)
is left as it is and reported. Evaluation mode uses running statistics and needs no
communication.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from timm.layers.norm_act import BatchNormAct2d, SyncBatchNormAct
from torch import nn

_BatchNorm = nn.modules.batchnorm._BatchNorm
KNOWN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, BatchNormAct2d)


class _AllGather(torch.autograd.Function):
    """Every rank's tensor, stacked in rank order, differentiable: a rank's input gets the sum over
    the ranks of the gradients that reached its slice."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def _synced_norm(bn: _BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Training-mode batch norm of `x` with the statistics of every rank's batch together: each
    rank's count, mean and centred sum of squares, gathered in one collective (one more in the
    backward pass) and combined as Chan et al.'s parallel variance, in rank order, so that every
    rank normalises with bit-identical statistics. In float64, as torch's CPU kernels accumulate:
    in float32 the input gradient, a difference of nearly equal terms, loses 3 digits on
    EfficientNet's 1x1 head layers."""
    channels = x.shape[1]
    dims = [0, *range(2, x.dim())]
    shape = [1, channels] + [1] * (x.dim() - 2)
    xd = x.double()
    var_r, mean_r = torch.var_mean(xd, dim=dims, unbiased=False)
    n_r = x.numel() / channels
    gathered = _AllGather.apply(torch.stack([mean_r, var_r * n_r, torch.full_like(mean_r, n_r)]))
    means, m2s, counts = gathered[:, 0], gathered[:, 1], gathered[:, 2]
    count = counts.sum(0)
    mean = (counts * means).sum(0) / count
    var = (m2s + counts * (means - mean) ** 2).sum(0) / count
    out = ((xd - mean.view(shape)) * torch.rsqrt(var + bn.eps).view(shape)).to(x.dtype)
    if bn.affine:
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        with torch.no_grad():
            assert bn.num_batches_tracked is not None
            bn.num_batches_tracked.add_(1)
            f = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            n = float(count[0])
            bn.running_mean.mul_(1 - f).add_(mean.detach().to(bn.running_mean.dtype), alpha=f)
            bn.running_var.mul_(1 - f).add_((var.detach() * (n / max(n - 1, 1))).to(bn.running_var.dtype), alpha=f)
    return out


class _CpuSynced(_BatchNorm):
    """Put before a BatchNorm class: its training forward then normalises over all ranks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        out = _synced_norm(self, x)
        if isinstance(self, BatchNormAct2d):
            out = self.act(self.drop(out))
        return out


class CpuSyncBatchNorm1d(_CpuSynced, nn.BatchNorm1d):
    pass


class CpuSyncBatchNorm2d(_CpuSynced, nn.BatchNorm2d):
    pass


class CpuSyncBatchNorm3d(_CpuSynced, nn.BatchNorm3d):
    pass


class CpuSyncBatchNormAct2d(_CpuSynced, BatchNormAct2d):
    pass


_CPU: dict[type, type] = {
    nn.BatchNorm1d: CpuSyncBatchNorm1d,
    nn.BatchNorm2d: CpuSyncBatchNorm2d,
    nn.BatchNorm3d: CpuSyncBatchNorm3d,
    BatchNormAct2d: CpuSyncBatchNormAct2d,
}


def _to_gpu_sync(m: Any) -> nn.Module:
    """torch's/timm's SyncBatchNorm holding `m`'s parameters and buffers (timm's own converter)."""
    out: Any
    if isinstance(m, BatchNormAct2d):
        out = SyncBatchNormAct(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        out.act, out.drop = m.act, m.drop
    else:
        out = nn.SyncBatchNorm(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    if m.affine:
        out.weight, out.bias = m.weight, m.bias
    out.running_mean, out.running_var, out.num_batches_tracked = m.running_mean, m.running_var, m.num_batches_tracked
    out.train(m.training)
    return out


def convert(module: nn.Module, device_type: str) -> tuple[nn.Module, list[str]]:
    """`module` with its BatchNorm layers synchronised over the process group, for training on
    `device_type` ('cpu': gloo; else torch's SyncBatchNorm); also returns the names of BatchNorm
    layers of other kinds, which keep each process's statistics."""
    skipped: list[str] = []

    def swap(m: nn.Module, name: str) -> nn.Module:
        out = m
        if type(m) in KNOWN:
            if device_type == "cpu":
                m.__class__ = _CPU[type(m)]  # same parameters, buffers and state-dict keys
            else:
                out = _to_gpu_sync(m)
        elif isinstance(m, _BatchNorm) and not isinstance(m, (nn.SyncBatchNorm, _CpuSynced)):
            skipped.append(name or type(m).__name__)
        for child_name, child in list(out.named_children()):
            out.add_module(child_name, swap(child, f"{name}.{child_name}" if name else child_name))
        return out

    return swap(module, ""), skipped

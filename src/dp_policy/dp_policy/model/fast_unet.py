"""Inference form of a trained ConditionalUnet1D for a fixed list of diffusion steps (ROS-free).

The same function as ``network.ConditionalUnet1D`` (equal to float32 rounding, see test_fast_unet.py),
reorganised for small-batch CPU inference, where the U-Net is bound by reading its weights and by
per-operator overhead rather than by arithmetic (measured on the 2-core CPU: bench/bench_policy.py):

* FiLM conditioning out of the loop. Each residual block computes
  ``Linear(Mish(cat(step_emb(t), obs)))``; since Mish is elementwise, that is
  ``W_s @ Mish(step_emb(t)) + W_o @ Mish(obs) + b``. The step part depends only on the inference
  timestep: for the K fixed timesteps it is a constant (K, E) table, built once here. The observation
  part is the same for all K steps of a chunk: one GEMM for all blocks together, once per chunk
  (``condition``). The per-step work is then one add and the convolutions; the step-embedding MLP and
  the 13 FiLM Linears (~2 M of the CPU default's 5.3 M parameters) leave the loop.
* Convolutions as one gather + one GEMM each: the padded input is gathered into (N, T, k*C_in)
  with a constant index (im2col) and multiplied by the (k*C_in, C_out) weight matrix; the
  transposed convolution is one GEMM on three shifted inputs. At batch 1 PyTorch runs Conv1d
  through its single-threaded fallback (oneDNN is skipped for small inputs), and ONNX Runtime's
  Conv costs ~3x a MatMul of the same size. The layout is channels-last (N, T, C) throughout, so
  the GEMMs need no transposes (only GroupNorm transposes, see _GroupNormMish).
* Only static sizes (python ints) in the traced code, so the ONNX export has no Shape computations.

Shapes: N = batch x samples, T horizon, A action dim, C channels, E total FiLM width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dp_policy.model.unet import ConditionalResidualBlock1D, ConditionalUnet1D, Conv1dBlock


def _mish(x: torch.Tensor) -> torch.Tensor:
    """Mish, x * tanh(softplus(x)). In an ONNX export written as x / (1 + 2 / p), p = e^x (e^x + 2):
    the same function (tanh(log(1 + e)) = p / (p + 2)) in five cheap elementwise operators, where ONNX
    Runtime's Softplus + Tanh cost ~3x as much. Safe at both ends: e^x = inf gives x, e^x = 0 gives 0;
    equal to F.mish within 2e-6 over [-30, 30] (test_fast_unet.py)."""
    return mish_elementary(x) if torch.onnx.is_in_onnx_export() else F.mish(x)


def mish_elementary(x: torch.Tensor) -> torch.Tensor:
    """Mish from exp, +, *, / only (the form _mish exports)."""
    e = torch.exp(x)
    return x / (1.0 + 2.0 / (e * (e + 2.0)))


def _unfold_index(k: int, stride: int, t_out: int, device: torch.device) -> torch.Tensor:
    """(t_out, k) rows of the padded input that output step i reads: stride * i + j."""
    return (torch.arange(t_out, device=device)[:, None] * stride + torch.arange(k, device=device)).contiguous()


class _GemmConv(nn.Module):
    """Conv1d on channels-last input (N, T, C_in) as one gather (im2col) + one GEMM.

    The gather's index depends only on the static sequence length, so it is a constant in a trace.
    """

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        c_out, c_in, k = conv.weight.shape
        if conv.dilation != (1,) or conv.groups != 1:
            raise ValueError('only undilated, ungrouped convolutions')
        self.k, self.stride, self.pad, self.c_in = k, conv.stride[0], conv.padding[0], c_in
        # (C_out, C_in, k) -> (k * C_in, C_out): row j*C_in + c matches the gathered (k, C_in) pairs
        self.register_buffer('weight', conv.weight.detach().permute(2, 1, 0).reshape(k * c_in, c_out).contiguous())
        self.register_buffer('bias', conv.bias.detach().clone())
        self._index: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, C_in) -> (N, T_out, C_out)."""
        if self.k == 1 and self.stride == 1:
            return torch.matmul(x, self.weight) + self.bias
        t = int(x.shape[1])                 # static (the horizon): python ints keep the export shape-free
        t_out = (t + 2 * self.pad - self.k) // self.stride + 1
        key = (t, x.device)
        if key not in self._index:
            # a normal tensor even when first built under inference_mode: the RTC sampler
            # differentiates through this module later (sampling/rtc.py)
            with torch.inference_mode(False):
                self._index[key] = _unfold_index(self.k, self.stride, t_out, x.device)
        xp = F.pad(x, (0, 0, self.pad, self.pad))                           # (N, T + 2p, C_in)
        cols = xp[:, self._index[key]].reshape(-1, t_out, self.k * self.c_in)  # (N, T_out, k * C_in)
        return torch.matmul(cols, self.weight) + self.bias                  # (N, T_out, C_out)


class _GroupNormMish(nn.Module):
    """GroupNorm + Mish on channels-last input."""

    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        self.groups = gn.num_groups
        self.eps = gn.eps
        self.register_buffer('weight', gn.weight.detach().clone())
        self.register_buffer('bias', gn.bias.detach().clone())
        self.register_buffer('unit_scale', torch.ones(gn.num_groups))
        self.register_buffer('zero_shift', torch.zeros(gn.num_groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, C) -> (N, T, C). The statistics through instance_norm over (N, G, C/G * T): one
        InstanceNormalization in ONNX Runtime, measured faster than reductions on the channels-last
        tensor; the transposes of these small tensors cost ~1 us each. Static sizes (python ints) keep
        the exported graph free of Shape computations."""
        t, c = int(x.shape[1]), int(x.shape[2])
        g = x.transpose(1, 2).reshape(-1, self.groups, c // self.groups * t)     # (N, G, C/G * T)
        y = F.instance_norm(g, weight=self.unit_scale, bias=self.zero_shift, eps=self.eps)  # (N, G, C/G * T)
        y = y.reshape(-1, c, t).transpose(1, 2)                                  # (N, T, C)
        return _mish(y * self.weight + self.bias)


class _Block(nn.Module):
    """Conv1dBlock in channels-last form."""

    def __init__(self, block: Conv1dBlock):
        super().__init__()
        conv, gn, _ = block.block
        self.conv = _GemmConv(conv)
        self.norm = _GroupNormMish(gn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class _ResBlock(nn.Module):
    """ConditionalResidualBlock1D with its FiLM vector given (a slice of the precomputed one)."""

    def __init__(self, blk: ConditionalResidualBlock1D, offset: int):
        super().__init__()
        self.b0 = _Block(blk.blocks[0])
        self.b1 = _Block(blk.blocks[1])
        self.c_out = blk.c_out
        self.scale = blk.cond_predict_scale
        self.offset = offset
        self.residual = _GemmConv(blk.residual_conv) if isinstance(blk.residual_conv, nn.Conv1d) else None

    def forward(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """x (N, T, C_in), film (N, 1, E) -> (N, T, C_out)."""
        out = self.b0(x)
        o, c = self.offset, self.c_out
        if self.scale:
            out = out * film[..., o:o + c] + film[..., o + c:o + 2 * c]
        else:
            out = out + film[..., o:o + c]
        out = self.b1(out)
        return out + (self.residual(x) if self.residual is not None else x)


class _Up(nn.Module):
    """ConvTranspose1d(C, C, 4, stride 2, padding 1) on channels-last input, as one GEMM.

    out[2m]   = W1^T x[m] + W3^T x[m-1] + b,   out[2m+1] = W2^T x[m] + W0^T x[m+1] + b
    (W_j = weight[:, :, j], zero outside the sequence): both phases from [x[m-1], x[m], x[m+1]].
    """

    def __init__(self, conv: nn.ConvTranspose1d):
        super().__init__()
        c_in, c_out, k = conv.weight.shape
        if k != 4 or conv.stride != (2,) or conv.padding != (1,):
            raise ValueError('only ConvTranspose1d(k=4, stride=2, padding=1)')
        w = conv.weight.detach()
        zero = w.new_zeros(c_in, c_out)
        even = torch.cat([w[:, :, 3], w[:, :, 1], zero], dim=0)           # rows: x[m-1], x[m], x[m+1]
        odd = torch.cat([zero, w[:, :, 2], w[:, :, 0]], dim=0)
        self.register_buffer('weight', torch.cat([even, odd], dim=1).contiguous())   # (3C, 2C)
        self.register_buffer('bias', conv.bias.detach().repeat(2))
        self.c_out = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = int(x.shape[1])
        xp = F.pad(x, (0, 0, 1, 1))
        cols = torch.cat([xp[:, 0:t], xp[:, 1:t + 1], xp[:, 2:t + 2]], dim=2)    # (N, T, 3C)
        y = torch.matmul(cols, self.weight) + self.bias                          # (N, T, 2C)
        return y.reshape(-1, 2 * t, self.c_out)                                  # interleave phases


class StepConditionedUnet(nn.Module):
    """A trained ConditionalUnet1D specialised to the inference timesteps ``timesteps`` (K,).

    ``condition(obs)`` once per chunk, then ``forward(x, k, ctx)`` for the k-th step (python int).
    The weights are copied (rearranged) at construction; the source network is left untouched.
    """

    def __init__(self, unet: ConditionalUnet1D, timesteps: torch.Tensor):
        super().__init__()
        unet = unet.eval()
        blocks: list[ConditionalResidualBlock1D] = []
        for res1, res2, _ in unet.down_modules:
            blocks += [res1, res2]
        blocks += list(unet.mid_modules)
        for res1, res2, _ in unet.up_modules:
            blocks += [res1, res2]
        dsed = unet.diffusion_step_encoder[1].in_features
        with torch.no_grad():
            step = _mish(unet.diffusion_step_encoder(timesteps.float()))               # (K, dsed)
            w_obs, table, offsets, off = [], [], [], 0
            for blk in blocks:
                lin = blk.cond_encoder[1]
                w_obs.append(lin.weight[:, dsed:])                                     # (e, G)
                table.append(step @ lin.weight[:, :dsed].T + lin.bias)                 # (K, e)
                offsets.append(off)
                off += lin.out_features
            self.register_buffer('w_obs', torch.cat(w_obs, dim=0).T.contiguous())     # (G, E)
            self.register_buffer('step_table', torch.cat(table, dim=1).contiguous())  # (K, E)
        it = iter(zip(blocks, offsets))
        res = lambda: _ResBlock(*next(it))                                             # noqa: E731
        self.down = nn.ModuleList()
        for _, _, down in unet.down_modules:
            self.down.append(nn.ModuleList([res(), res(), _GemmConv(down.conv) if not isinstance(down, nn.Identity)
                                             else nn.Identity()]))
        self.mid = nn.ModuleList([res(), res()])
        self.up = nn.ModuleList([nn.ModuleList([res(), res(), _Up(up.conv)]) for _, _, up in unet.up_modules])
        self.final_block = _Block(unet.final_conv[0])
        self.final_conv = _GemmConv(unet.final_conv[1])

    def condition(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (N, G) observation features -> (K, N, 1, E): every block's FiLM vector at every step."""
        return (_mish(obs) @ self.w_obs)[None, :, None] + self.step_table[:, None, None]

    def forward(self, x: torch.Tensor, k: int, ctx: torch.Tensor) -> torch.Tensor:
        """x (N, T, A) at step k (index into the timesteps), ctx from ``condition`` -> (N, T, A)."""
        return self.denoise(x, ctx[k])

    def denoise(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """x (N, T, A), film (N, 1, E) = condition(obs)[k] -> the network output (N, T, A): one
        graph for every step (the step is in the FiLM vector)."""
        skips = []
        for res1, res2, down in self.down:
            x = res2(res1(x, film), film)
            skips.append(x)
            x = down(x)
        for r in self.mid:
            x = r(x, film)
        for res1, res2, up in self.up:
            x = torch.cat((x, skips.pop()), dim=2)
            x = up(res2(res1(x, film), film))
        return self.final_conv(self.final_block(x))

"""Observation encoders: joint state passthrough and per-camera image encoders (ROS-free).

* ``SpatialSoftmax``   - feature map -> expected (x, y) of K learned keypoints (Levine et al.).
* ``ResNet18GN``       - ResNet-18 written in plain torch with GroupNorm instead of BatchNorm (the
                          paper's choice: BatchNorm and EMA do not mix), spatial-softmax pooling.
* ``SmallCNN``         - 4 conv layers + spatial softmax: a ~40k-parameter encoder for CPUs.
* ``ImagePreprocess``  - uint8 (N, H, W, 3) RGB -> float (N, 3, h, w) in [-1, 1]: resize to the
                          checkpoint's image size when needed, random crop (training) or centre crop.
* ``ObservationEncoder`` - normalised state (B, To, S) + images {cam: (B, To, H, W, 3) uint8}
                          -> one global condition vector (B, To * (S + n_cam * F)).

No pretrained weights are loaded (none can be fetched here): encoders train from scratch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dp_policy.config import VisionConfig


class SpatialSoftmax(nn.Module):
    """(N, C, H, W) -> (N, 2K): softmax over H*W per keypoint map, expected image coordinates in [-1, 1]."""

    def __init__(self, channels: int, height: int, width: int, num_keypoints: int):
        super().__init__()
        self.keypoints = nn.Conv2d(channels, num_keypoints, 1)
        ys, xs = torch.meshgrid(torch.linspace(-1.0, 1.0, height), torch.linspace(-1.0, 1.0, width),
                                indexing='ij')
        grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)          # (H*W, 2)
        self.register_buffer('grid', grid, persistent=False)
        self.num_keypoints = num_keypoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kp = self.keypoints(x)                                               # (N, K, H, W)
        attn = torch.softmax(kp.flatten(2), dim=-1)                          # (N, K, H*W)
        coords = attn @ self.grid                                            # (N, K, 2)
        return coords.flatten(1)                                             # (N, 2K)


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // 16), channels)                    # the paper: 16 channels/group


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.gn1 = _gn(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.gn2 = _gn(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _gn(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.gn1(self.conv1(x)))                                # (N, C_out, H', W')
        out = self.gn2(self.conv2(out))                                      # (N, C_out, H', W')
        identity = x if self.down is None else self.down(x)                  # (N, C_out, H', W')
        return F.relu(out + identity)


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


class ResNet18GN(nn.Module):
    """ResNet-18 trunk (GroupNorm), spatial softmax, linear projection to feature_dim."""

    def __init__(self, crop_hw: tuple[int, int], cfg: VisionConfig):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), _gn(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers = []
        c_in = 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        h, w = crop_hw
        h, w = _conv_out(h, 7, 2, 3), _conv_out(w, 7, 2, 3)                  # stem conv
        h, w = _conv_out(h, 3, 2, 1), _conv_out(w, 3, 2, 1)                  # max pool
        for _ in range(3):                                                   # layer2..4 stride 2
            h, w = _conv_out(h, 3, 2, 1), _conv_out(w, 3, 2, 1)
        self.pool = SpatialSoftmax(512, h, w, cfg.num_keypoints)
        self.proj = nn.Linear(2 * cfg.num_keypoints, cfg.feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))                                        # (N, 512, h/32, w/32)
        return F.relu(self.proj(self.pool(x)))                               # (N, F)


class SmallCNN(nn.Module):
    """Conv layers (GroupNorm, ReLU; strides from the config) + spatial softmax + projection: cheap on a CPU."""

    def __init__(self, crop_hw: tuple[int, int], cfg: VisionConfig):
        super().__init__()
        layers = []
        c_in = 3
        h, w = crop_hw
        for c_out, stride in zip(cfg.small_cnn_channels, cfg.small_cnn_strides):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(max(1, c_out // 16), c_out), nn.ReLU()]
            h, w = _conv_out(h, 3, stride, 1), _conv_out(w, 3, stride, 1)
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.pool = SpatialSoftmax(c_in, h, w, cfg.num_keypoints)
        self.proj = nn.Linear(2 * cfg.num_keypoints, cfg.feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)                                                    # (N, C, h/s, w/s)
        return F.relu(self.proj(self.pool(x)))                               # (N, F)


def resize_uint8(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, h, w, 3) uint8, bilinear (antialiased when shrinking)."""
    x = img.permute(0, 3, 1, 2).float()                                      # (N, 3, H, W)
    shrink = hw[0] < img.shape[1] or hw[1] < img.shape[2]
    x = F.interpolate(x, size=tuple(hw), mode='bilinear', align_corners=False, antialias=shrink)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # (N, h, w, 3)


class ImagePreprocess(nn.Module):
    """uint8 (N, H, W, 3) RGB -> float (N, 3, ch, cw) in [-1, 1].

    Images whose size differs from ``image_hw`` (the training size) are resized to it first.
    Crop: random per image when ``self.training`` (augmentation), centre otherwise.
    """

    def __init__(self, image_hw: tuple[int, int], crop_hw: tuple[int, int]):
        super().__init__()
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.crop_hw = (int(crop_hw[0]), int(crop_hw[1]))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        H, W = self.image_hw
        ch, cw = self.crop_hw
        if tuple(img.shape[1:3]) != (H, W):
            img = resize_uint8(img, (H, W))                                  # (N, H, W, 3)
        if self.training and (ch < H or cw < W):
            n = img.shape[0]
            oy = torch.randint(0, H - ch + 1, (n,)).tolist()                 # N offsets (CPU RNG)
            ox = torch.randint(0, W - cw + 1, (n,)).tolist()
            # slicing per image is ~10x faster than one advanced-indexing gather on the CPU
            img = torch.stack([img[i, y:y + ch, x:x + cw] for i, (y, x) in enumerate(zip(oy, ox))])  # (N, ch, cw, 3)
        else:
            y0, x0 = (H - ch) // 2, (W - cw) // 2
            img = img[:, y0:y0 + ch, x0:x0 + cw]                             # (N, ch, cw, 3)
        x = img.permute(0, 3, 1, 2).float()                                  # (N, 3, ch, cw)
        return x * (2.0 / 255.0) - 1.0                                       # (N, 3, ch, cw) in [-1, 1]


def build_image_encoder(crop_hw: tuple[int, int], cfg: VisionConfig) -> nn.Module:
    if cfg.encoder == 'resnet18':
        return ResNet18GN(crop_hw, cfg)
    return SmallCNN(crop_hw, cfg)


class ObservationEncoder(nn.Module):
    """(normalised state, uint8 images) -> global condition (B, To * (S + n_cam * F))."""

    def __init__(self, state_dim: int, camera_names: list[str], image_hw: tuple[int, int] | None,
                 cfg: VisionConfig):
        super().__init__()
        self.state_dim = state_dim
        self.camera_names = list(camera_names)
        if self.camera_names and image_hw is None:
            raise ValueError('cameras given but image_hw is None')
        self.feature_dim = cfg.feature_dim if self.camera_names else 0
        if self.camera_names:
            crop_hw = cfg.crop_hw(image_hw)
            self.preprocess = ImagePreprocess(image_hw, crop_hw)
            # ModuleDict keys cannot contain '.', so cameras are indexed by position.
            self.image_encoders = nn.ModuleList([build_image_encoder(crop_hw, cfg) for _ in self.camera_names])
        else:
            self.preprocess = None
            self.image_encoders = nn.ModuleList()

    @property
    def per_step_dim(self) -> int:
        return self.state_dim + len(self.camera_names) * self.feature_dim

    def forward(self, state: torch.Tensor, images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        B, To, _ = state.shape                                               # state (B, To, S)
        feats = [state]
        for cam, enc in zip(self.camera_names, self.image_encoders):
            img = images[cam]                                                # (B, To, H, W, 3) uint8
            x = self.preprocess(img.flatten(0, 1))                           # (B*To, 3, ch, cw)
            feats.append(enc(x).reshape(B, To, -1))                          # (B, To, F)
        return torch.cat(feats, dim=-1).flatten(1)                           # (B, To * (S + n_cam*F))

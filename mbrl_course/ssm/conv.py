"""PlaNet's convolutional encoder and decoder for 64×64×3 frames, and the frame conversions around them.

PlaNet (Hafner et al., 2019, appendix A) and Dreamer embed each frame y_t with four convolutions of
kernel 4 and stride 2 (depths d, 2d, 4d, 8d, ReLU; d = 32) and reconstruct it with four transposed
convolutions of kernels 5, 5, 6, 6 and stride 2 from the features [h_t, s_t]; the decoder's output is the
mean of a unit-variance Gaussian over the pixels,

    e_t = enc(y_t),        p(y_t | s_t, h_t) = N(y_t | dec([h_t, s_t]), I).

Pixels are scaled to [-0.5, 0.5] (PlaNet's preprocessing, without its bit-depth reduction):
:func:`preprocess_frames` turns uint8 frames ``(..., 64, 64, 3)`` into floats ``(..., 3, 64, 64)``, and
:func:`postprocess_frames` goes back for display. A smaller depth (e.g. d = 8) keeps training on a CPU
within minutes. Leading dimensions (batch, time) are flattened for the convolutions and restored after.
"""

from __future__ import annotations

import torch
from torch import nn

from mbrl_course._checks import check_positive_int

FRAME_SIZE = 64
"""side of the square frames the convolutions are built for [pixels]"""

FRAME_SHAPE = (FRAME_SIZE, FRAME_SIZE, 3)
"""one frame as the envs and buffers store it: (height, width, RGB), uint8"""


def check_frames(name: str, frames: torch.Tensor) -> None:
    """Refuse anything but a uint8 tensor of shape (..., 64, 64, 3), naming ``name``."""
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"{name}: expected a uint8 tensor of shape (..., 64, 64, 3), got {type(frames).__name__}")
    if frames.dtype != torch.uint8:
        raise TypeError(f"{name}: expected dtype torch.uint8 (pixels 0..255, shape (..., 64, 64, 3)), got "
                        f"{frames.dtype}; floats already in [-0.5, 0.5] go channels first, (..., 3, 64, 64)")
    if frames.ndim < 3 or tuple(frames.shape[-3:]) != FRAME_SHAPE:
        raise ValueError(f"{name}: expected shape (..., 64, 64, 3) (64×64 RGB frames, channels last), "
                         f"got {tuple(frames.shape)}")


def preprocess_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames ``(..., 64, 64, 3)`` -> floats ``(..., 3, 64, 64)`` in [-0.5, 0.5]: y = pixel / 255 - 0.5."""
    check_frames("frames", frames)
    return frames.movedim(-1, -3).to(torch.get_default_dtype()) / 255.0 - 0.5


def postprocess_frames(images: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`preprocess_frames` for display: ``(..., 3, 64, 64)`` floats -> uint8 ``(..., 64, 64, 3)``.

    Values outside [-0.5, 0.5] (a decoder's mean may overshoot) are clipped.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"images: expected a floating-point tensor (..., 3, 64, 64), got {got}")
    if images.ndim < 3 or tuple(images.shape[-3:]) != (3, FRAME_SIZE, FRAME_SIZE):
        raise ValueError(f"images: expected shape (..., 3, 64, 64), got {tuple(images.shape)}")
    return ((images.detach() + 0.5).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).movedim(-3, -1)


def as_images(frames: torch.Tensor) -> torch.Tensor:
    """Frames for the encoder: uint8 ``(..., 64, 64, 3)`` are preprocessed; floats must be ``(..., 3, 64, 64)``."""
    if isinstance(frames, torch.Tensor) and frames.is_floating_point():
        if frames.ndim < 3 or tuple(frames.shape[-3:]) != (3, FRAME_SIZE, FRAME_SIZE):
            raise ValueError(f"frames: expected uint8 (..., 64, 64, 3) or preprocessed floats, channels first "
                             f"(..., 3, 64, 64), got floats of shape {tuple(frames.shape)}")
        return frames
    return preprocess_frames(frames)


class ConvEncoder(nn.Module):
    """e_t = enc(y_t): four convolutions, kernel 4, stride 2, depths d, 2d, 4d, 8d, ReLU; 64 -> 31 -> 14 -> 6 -> 2.

    ``frames``: uint8 ``(..., 64, 64, 3)`` or preprocessed floats ``(..., 3, 64, 64)`` -> ``(..., embed_dim)``
    with embed_dim = 8d · 2 · 2 = 32 d (1024 at PlaNet's d = 32).
    """

    def __init__(self, depth: int = 32) -> None:
        super().__init__()
        d = check_positive_int("depth", depth)
        self.depth = d
        self.net = nn.Sequential(
            nn.Conv2d(3, d, 4, stride=2), nn.ReLU(),
            nn.Conv2d(d, 2 * d, 4, stride=2), nn.ReLU(),
            nn.Conv2d(2 * d, 4 * d, 4, stride=2), nn.ReLU(),
            nn.Conv2d(4 * d, 8 * d, 4, stride=2), nn.ReLU(),
        )
        self.embed_dim = 32 * d

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        images = as_images(frames).to(self.net[0].weight.dtype)
        lead = images.shape[:-3]
        out = self.net(images.reshape((-1,) + images.shape[-3:]))
        return out.reshape(lead + (self.embed_dim,))


class ConvDecoder(nn.Module):
    """dec([h_t, s_t]): a linear layer to 32d, then transposed convolutions, kernels 5, 5, 6, 6, stride 2,
    depths 4d, 2d, d, 3 (ReLU between); 1 -> 5 -> 13 -> 30 -> 64.

    ``features: (..., feature_dim)`` -> the mean of p(y_t | s_t, h_t), ``(..., 3, 64, 64)`` (unit variance).
    """

    def __init__(self, feature_dim: int, depth: int = 32) -> None:
        super().__init__()
        self.feature_dim = check_positive_int("feature_dim", feature_dim)
        d = check_positive_int("depth", depth)
        self.depth = d
        self.linear = nn.Linear(feature_dim, 32 * d)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(32 * d, 4 * d, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(4 * d, 2 * d, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(2 * d, d, 6, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(d, 3, 6, stride=2),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        lead = features.shape[:-1]
        x = self.linear(features.reshape(-1, features.shape[-1]))
        out = self.net(x.reshape(x.shape[0], -1, 1, 1))
        return out.reshape(lead + (3, FRAME_SIZE, FRAME_SIZE))

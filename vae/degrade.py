"""Controlled degradations of a 64x64 gray face, in [0, 1]: the evidence that the score means
quality (tests) and the demo's side-by-side use the same definitions."""

from __future__ import annotations

import math

import cv2
import numpy as np


def blur(g: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    return cv2.GaussianBlur(g, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def down_up(g: np.ndarray, factor: int = 4) -> np.ndarray:
    h, w = g.shape
    small = cv2.resize(g, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def noise(g: np.ndarray, std: float = 0.15, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(g + rng.normal(0.0, std, g.shape), 0.0, 1.0).astype(np.float32)


def underexpose(g: np.ndarray, gain: float = 0.25, gamma: float = 1.5) -> np.ndarray:
    """A strongly under-exposed shot: less light (gain) through a darkening tone curve."""
    return np.clip(gain * np.power(g, gamma), 0.0, 1.0).astype(np.float32)


def upside_down(g: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(g[::-1])


DEGRADATIONS = {
    "blur": blur,
    "down_up_4x": down_up,
    "noise": noise,
    "underexposed": underexpose,
    "upside_down": upside_down,
}


# What the denoising objective may draw. The first four are camera failures (the shipped
# model's training); "occlusion" and "shadow" are what LFW's worst probes show besides them:
# sunglasses, hands and microphones over the face, and hard side light.
CAMERA_FAILURES = ("blur", "resolution", "noise", "exposure")
DEGRADATION_KINDS = (*CAMERA_FAILURES, "occlusion", "shadow")


def check_degradations(kinds) -> None:
    """Refuse names random_degradations does not draw, and an empty choice."""
    if unknown := set(kinds) - set(DEGRADATION_KINDS):
        raise ValueError(
            f"unknown degradations: {', '.join(sorted(unknown))} "
            f"(choose from {', '.join(DEGRADATION_KINDS)})"
        )
    if not kinds:
        raise ValueError("denoising needs at least one degradation (or --denoise 0)")


def random_degradations(x, p: float, generator=None, kinds: tuple[str, ...] = CAMERA_FAILURES):
    """Training-time corruption for the denoising-VAE objective (Im et al., AAAI 2017).

    x: (B, 1, 64, 64) torch tensor in [0, 1]. A fraction `p` of the batch is degraded with one
    randomly drawn failure of random strength, among `kinds`: defocus blur, loss of
    resolution, sensor noise, under/over-exposure (the default), and optionally an occluder
    (a flat or textured patch over part of the face) or a hard shadow across it. The encoder
    sees the degraded face, the likelihood is of the clean one, so the decoder redraws the
    face behind the failure and the score drops where the failure is. Upside-down faces and
    non-face textures are deliberately NOT drawn here, so the tests on them measure
    generalisation, not training.
    """
    import torch
    import torch.nn.functional as F

    check_degradations(kinds)
    b = x.shape[0]
    out = x.clone()
    pick = torch.rand(b, generator=generator) < p
    kind = torch.randint(0, len(kinds), (b,), generator=generator)
    u = torch.rand(b, generator=generator)
    for i in torch.nonzero(pick).flatten().tolist():
        xi = x[i : i + 1]
        k, s = kinds[int(kind[i])], float(u[i])
        if k == "blur":  # defocus blur, sigma 0.8 .. 4 px
            sigma = 0.8 + 3.2 * s
            r = int(3 * sigma + 0.5)
            t = torch.arange(-r, r + 1, dtype=x.dtype)
            g = torch.exp(-0.5 * (t / sigma) ** 2)
            g = g / g.sum()
            y = F.pad(xi, (r, r, r, r), mode="reflect")
            y = F.conv2d(y, g.view(1, 1, 1, -1))
            out[i] = F.conv2d(y, g.view(1, 1, -1, 1))[0]
        elif k == "resolution":  # low resolution: down by 2..8, back up
            f = 2 + int(s * 6.999)
            small = F.interpolate(xi, size=(64 // f, 64 // f), mode="area")
            out[i] = F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)[0]
        elif k == "noise":  # sensor noise, std 0.03 .. 0.25
            n = torch.randn(xi.shape, generator=generator, dtype=x.dtype)
            out[i] = (xi + (0.03 + 0.22 * s) * n).clamp(0, 1)[0]
        elif k == "exposure":  # under (gain 0.15..0.6, darker tone curve) or over (1.8..3)
            if s < 0.7:
                out[i] = ((0.15 + 0.45 * s / 0.7) * xi.pow(1.0 + s)).clamp(0, 1)[0]
            else:
                out[i] = ((1.8 + 4.0 * (s - 0.7)) * xi).clamp(0, 1)[0]
        elif k == "occlusion":  # a patch of 15..50% x 10..40% of the side, anywhere
            r4 = torch.rand(5, generator=generator).tolist()
            w, h = int(64 * (0.15 + 0.35 * r4[0])), int(64 * (0.10 + 0.30 * r4[1]))
            x0, y0 = int((64 - w) * r4[2]), int((64 - h) * r4[3])
            n = torch.randn((h, w), generator=generator, dtype=x.dtype)
            out[i, 0, y0 : y0 + h, x0 : x0 + w] = (r4[4] + 0.05 * n).clamp(0, 1)
        else:  # shadow: light falls off across the face, to 0.15..0.6 on the dark side
            a = 2 * math.pi * s
            lo = 0.15 + 0.45 * float(torch.rand(1, generator=generator))
            t = torch.linspace(-1, 1, 64, dtype=x.dtype)
            ramp = (math.cos(a) * t[None, :] + math.sin(a) * t[:, None]).clamp(-1, 1)
            gain = lo + (1 - lo) * torch.sigmoid(4 * ramp)
            out[i] = (xi[0] * gain).clamp(0, 1)
    return out

"""The face-quality VAE of Baert, Leroux & Simoens (AAAI 2021 workshop), in one file.

Encoder f_phi(x): 5 x [conv, batch-norm, leaky ReLU] + 2 fully connected heads -> q(z|x).
Decoder f_theta(z): 2 fully connected + 5 x [transposed conv, batch-norm, leaky ReLU]
-> p(x|z), a per-pixel Gaussian (mean, bounded standard deviation).

Training maximises the ELBO, eq. (1) of the paper:
    L(x) = E_{q(z|x)}[log p(x|z)] - KL(q(z|x) || N(0, I))
The quality score is the log reconstruction probability, eq. (2):
    log RP(x) = log( (1/L) sum_l N(x | mu_x^l, sigma_x^l) ),  z^l ~ q(z|x)
computed with a log-sum-exp over the L samples of the per-image log-density (summed over
pixels), so it neither underflows nor depends on the batch a crop is scored in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE = 64


@dataclass(frozen=True)
class VAEConfig:
    latent_dim: int = 128
    enc_channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    # Narrow towards the full resolution: the decoder runs L times per crop, and the last two
    # blocks cost most of its FLOPs; the width there is what bounds scoring speed.
    dec_channels: tuple[int, ...] = (256, 128, 64, 32, 16, 8)
    dec_hidden: int = 512
    sigma_min: float = 0.01  # bounds of the likelihood's standard deviation (pixels in [0, 1])
    sigma_max: float = 0.5
    leak: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        d = dict(d)
        for k in ("enc_channels", "dec_channels"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def _down(cin: int, cout: int, leak: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(leak),
    )


def _up(cin: int, cout: int, leak: float) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(leak),
    )


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans = (1, *cfg.enc_channels)
        self.blocks = nn.Sequential(*[_down(a, b, cfg.leak) for a, b in pairwise(chans)])
        flat = cfg.enc_channels[-1] * (IMAGE_SIZE // 2 ** len(cfg.enc_channels)) ** 2
        self.fc_mu = nn.Linear(flat, cfg.latent_dim)
        self.fc_logvar = nn.Linear(flat, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(x).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h).clamp(-12.0, 8.0)


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        chans = cfg.dec_channels  # 6 widths -> 5 up-sampling blocks
        self.start = IMAGE_SIZE // 2 ** (len(chans) - 1)
        self.fc1 = nn.Linear(cfg.latent_dim, cfg.dec_hidden)
        self.fc2 = nn.Linear(cfg.dec_hidden, chans[0] * self.start**2)
        self.blocks = nn.Sequential(*[_up(a, b, cfg.leak) for a, b in pairwise(chans)])
        # 1x1 read-out of the likelihood's parameters per pixel: (mean, pre-sigma)
        self.head = nn.Conv2d(chans[-1], 2, 1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.leaky_relu(self.fc1(z), self.cfg.leak)
        h = F.leaky_relu(self.fc2(h), self.cfg.leak)
        h = h.view(-1, self.cfg.dec_channels[0], self.start, self.start)
        out = self.head(self.blocks(h))
        mu_x = torch.sigmoid(out[:, :1])
        c = self.cfg
        sigma_x = c.sigma_min + (c.sigma_max - c.sigma_min) * torch.sigmoid(out[:, 1:])
        return mu_x, sigma_x


def gaussian_log_density(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """log N(x | mu, sigma^2 I), summed over every pixel of each image -> shape (batch,)."""
    lp = -0.5 * ((x - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
    return lp.flatten(1).sum(1)


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig | None = None):
        super().__init__()
        self.cfg = cfg or VAEConfig()
        self.encoder = Encoder(self.cfg)
        self.decoder = Decoder(self.cfg)

    def forward(
        self, x: torch.Tensor, target: torch.Tensor | None = None, kl_weight: float = 1.0
    ) -> dict[str, torch.Tensor]:
        """One-sample ELBO for training. x: (B, 1, 64, 64) in [0, 1].

        With `target`, this is the denoising ELBO: the encoder sees x (possibly degraded) and
        the likelihood is of `target` (the clean face), so p(x|z) only ever learns what a
        high-quality face looks like -- the property the quality score relies on.
        `kl_weight` is beta of a beta-VAE (Higgins et al. 2017); 1 is the ELBO above.
        """
        target = x if target is None else target
        mu_z, logvar_z = self.encoder(x)
        # reparameterisation trick: z = mu + sigma * eps, eps ~ N(0, I)
        z = mu_z + torch.exp(0.5 * logvar_z) * torch.randn_like(mu_z)
        mu_x, sigma_x = self.decoder(z)
        rec = gaussian_log_density(target, mu_x, sigma_x)  # E_q[log p(x|z)], one sample
        # KL(N(mu, sigma^2) || N(0, I)) in closed form
        kl = 0.5 * (mu_z.pow(2) + logvar_z.exp() - 1.0 - logvar_z).sum(1)
        elbo = rec - kl_weight * kl
        return {"loss": -elbo.mean(), "rec": rec.mean(), "kl": kl.mean(), "mu_x": mu_x}

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) of a batch -> (mu_z, sigma_z)."""
        mu_z, logvar_z = self.encoder(x)
        return mu_z, torch.exp(0.5 * logvar_z)

    @torch.inference_mode()
    def sample_log_likelihoods(
        self, x: torch.Tensor, mu_z: torch.Tensor, std_z: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        """log p(x | z^l) for each latent sample z^l = mu_z + sigma_z * eps^l -> (B, L).

        One decoder pass per latent sample over the whole batch: measured faster on a CPU
        than one pass over all B*L samples (the activations stay in cache), same result.
        """
        log_p = []
        for e in eps:
            mu_x, sigma_x = self.decoder(mu_z + std_z * e)
            log_p.append(gaussian_log_density(x, mu_x, sigma_x))  # log N(x | mu^l, sigma^l)
        return torch.stack(log_p, 1)

    @torch.inference_mode()
    def log_reconstruction_probability(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Eq. (2) in log space. x: (B, 1, 64, 64); eps: (L, latent) fixed noise -> (B,).

        The same eps is used for every crop, so a crop's score does not depend on which batch
        it is in or on any global RNG state: identical crops get identical scores, always.
        """
        mu_z, std_z = self.encode(x)
        return log_mean_exp(self.sample_log_likelihoods(x, mu_z, std_z, eps))


def log_mean_exp(log_p: torch.Tensor) -> torch.Tensor:
    """log (1/L) sum_l exp(log_p[:, l]): the Monte-Carlo mean of Eq. (2), in log space."""
    return torch.logsumexp(log_p, dim=1) - math.log(log_p.shape[1])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fused_for_inference(model: VAE) -> VAE:
    """A copy of `model` for scoring: batch-norm folded into the preceding (transposed)
    convolution and channels-last memory layout.

    In eval mode batch-norm is a fixed per-channel affine map, so folding it changes no
    mathematics, only float rounding (~1e-6 relative); it removes a full pass over the
    largest activations, which is where the decoder spends its time on a CPU.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = VAE(model.cfg)
    fused.load_state_dict(model.state_dict())
    fused.eval()
    for blocks, transpose in ((fused.encoder.blocks, False), (fused.decoder.blocks, True)):
        for block in blocks:
            block[0] = fuse_conv_bn_eval(block[0], block[1], transpose=transpose)
            block[1] = nn.Identity()
    return fused.to(memory_format=torch.channels_last)

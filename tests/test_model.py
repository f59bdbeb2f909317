import math

import numpy as np
import torch
from torch import nn

from vae.model import (
    VAE,
    VAEConfig,
    count_parameters,
    fused_for_inference,
    gaussian_log_density,
)


def _model(seed=0):
    torch.manual_seed(seed)
    m = VAE()
    # Non-trivial batch-norm statistics, so fusion and eval mode are really exercised.
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.3, 0.3)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
    return m.eval()


def test_architecture_matches_the_paper():
    m = VAE()
    enc = list(m.encoder.blocks)
    dec = list(m.decoder.blocks)
    assert len(enc) == 5 and len(dec) == 5
    for b in enc:
        assert [type(x) for x in b] == [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU]
    for b in dec:
        assert [type(x) for x in b] == [nn.ConvTranspose2d, nn.BatchNorm2d, nn.LeakyReLU]
    assert isinstance(m.encoder.fc_mu, nn.Linear) and isinstance(m.encoder.fc_logvar, nn.Linear)
    assert isinstance(m.decoder.fc1, nn.Linear) and isinstance(m.decoder.fc2, nn.Linear)
    assert count_parameters(m) <= 4_000_000


def test_decoder_gives_bounded_gaussian_per_pixel():
    m = _model()
    cfg = m.cfg
    with torch.no_grad():
        mu, sigma = m.decoder(torch.randn(4, cfg.latent_dim) * 10)
    assert mu.shape == sigma.shape == (4, 1, 64, 64)
    assert float(mu.min()) >= 0 and float(mu.max()) <= 1
    assert float(sigma.min()) >= cfg.sigma_min and float(sigma.max()) <= cfg.sigma_max


def test_elbo_terms_and_gradients():
    torch.manual_seed(0)
    m = VAE().train()
    x = torch.rand(6, 1, 64, 64)
    out = m(x)
    assert torch.isfinite(out["loss"])
    assert out["kl"].item() >= 0
    assert torch.allclose(out["loss"], -(out["rec"] - out["kl"]), rtol=1e-5, atol=1e-3)
    out["loss"].backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_gaussian_log_density_matches_torch_distributions():
    x, mu = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    sigma = torch.rand(3, 1, 8, 8) * 0.4 + 0.05
    ref = torch.distributions.Normal(mu, sigma).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(gaussian_log_density(x, mu, sigma), ref, atol=1e-3)


def test_log_reconstruction_probability_is_eq2_with_logsumexp():
    """Recompute eq. (2) sample by sample, in float64, and compare."""
    m = _model()
    x = torch.rand(3, 1, 64, 64)
    eps = torch.randn(10, m.cfg.latent_dim)
    got = m.log_reconstruction_probability(x, eps)
    with torch.no_grad():
        mu_z, logvar_z = m.encoder(x)
        per_sample = []
        for e in eps:
            mu_x, sig_x = m.decoder(mu_z + torch.exp(0.5 * logvar_z) * e)
            d = torch.distributions.Normal(mu_x.double(), sig_x.double())
            per_sample.append(d.log_prob(x.double()).flatten(1).sum(1))
        lp = torch.stack(per_sample, 1)  # (B, L)
        # log((1/L) sum_l exp(lp_l)), shifted by the max for stability
        top = lp.max(1).values
        want = top + torch.log(torch.exp(lp - top[:, None]).mean(1))
    assert torch.allclose(got.double(), want, rtol=1e-4, atol=0.05)


def test_fused_model_scores_like_the_plain_model():
    m = _model()
    f = fused_for_inference(m)
    x = torch.rand(5, 1, 64, 64)
    eps = torch.randn(10, m.cfg.latent_dim)
    a = m.log_reconstruction_probability(x, eps)
    b = f.log_reconstruction_probability(x.contiguous(memory_format=torch.channels_last), eps)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-2)
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in f.modules())


def test_config_roundtrip():
    cfg = VAEConfig(latent_dim=32)
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    assert math.isclose(VAE(cfg).cfg.sigma_min, cfg.sigma_min)


def test_score_is_deterministic_and_batch_independent(scorer):
    rng = np.random.default_rng(0)
    crops = rng.random((7, 64, 64)).astype(np.float32)
    a = scorer.score_gray(crops)
    b = scorer.score_gray(crops[::-1].copy())[::-1]
    c = np.array([scorer.score_gray(crops[i : i + 1])[0] for i in range(7)])
    # float32 sums over 4,096 pixels in another batch layout: rounding of ~1e-7 relative
    assert np.allclose(a, b, rtol=1e-6, atol=1e-2)
    assert np.allclose(a, c, rtol=1e-6, atol=1e-2)
    from vae.score import QualityScorer

    again = QualityScorer(scorer_weights()).score_gray(
        crops
    )  # a fresh scorer: same seed, same samples
    assert np.array_equal(a, again)


def scorer_weights():
    from escrow.settings import get_settings

    return get_settings().vae_weights


def test_light_neutral_gamma_takes_the_light_out_of_the_code_length():
    """Crops of the same kind of texture at different brightness: at gamma 1 a darker crop
    uses fewer gray levels and so codes shorter, whatever its detail. The chosen gamma makes
    the code length follow the light less, and the gamma only changes how bits are counted."""
    from vae.score import GAMMA_GRID, complexity_bits, light_neutral_gamma, png_bits

    rng = np.random.default_rng(0)
    tex = rng.random((120, 64, 64)).astype(np.float32)
    tex = (tex + np.roll(tex, 1, 1) + np.roll(tex, 1, 2)) / 3  # some local structure
    light = rng.uniform(0.15, 1.0, size=(120, 1, 1)).astype(np.float32)
    crops = tex * light

    def rank_corr(bits):
        a = np.argsort(np.argsort(bits))
        b = np.argsort(np.argsort(crops.mean(axis=(1, 2))))
        return abs(np.corrcoef(a, b)[0, 1])

    at_one = rank_corr(complexity_bits(crops, 1.0))
    g = light_neutral_gamma(crops)
    assert at_one > 0.5 and g in GAMMA_GRID and g < 1.0
    assert rank_corr(complexity_bits(crops, g)) < at_one
    assert np.array_equal(complexity_bits(crops, 1.0), png_bits(crops))
    assert np.array_equal(complexity_bits(crops, 0.5), png_bits(np.sqrt(crops)))

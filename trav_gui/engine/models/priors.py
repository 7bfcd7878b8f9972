"""Generative priors: denoisers that pull a traversed image toward real images.

A prior here is a denoiser ``D(x, σ)``: given an image with Gaussian noise of standard
deviation σ added, its estimate of the clean image. By Tweedie's formula
``(D(x, σ) − x) / σ²`` is the score ``∇ₓ log p_σ(x)`` of the data smoothed at σ, so the
guided traversal step (:mod:`trav_gui.engine.models.recipes`)

    x ← clip(x + α·g/‖g‖₂ + λ·(D(x, σ) − x), 0, 1)

adds λσ² times the score to the classifier's step: a pull toward where real images lie, at
the scale σ. Two kinds, both trained by ``python -m training.train_prior``:

- ``dae``: a denoising autoencoder (7×7×16 bottleneck) trained at one σ; it ignores the σ
  it is given.
- ``score``: a noise-conditional score model (NCSN, Song & Ermon 2019) as a small U-Net that
  predicts the noise, trained at every σ in [σ_min, σ_max] (log-uniform), used with σ annealed
  from large to small over a traversal.
- ``critic``: not a denoiser but a realism critic (:class:`RealismCritic`), a small CNN whose
  logit says "a real image" against "a recipe's endpoint", trained adversarially (L2 PGD) by
  ``python -m training.train_critic``. Its logit estimates log p_real / p_endpoint, so a step up
  its gradient is a correction toward real images of what the score prior leaves (discriminator
  guidance, Kim et al. 2023); a recipe's ``critic`` takes such steps in its finish.

Priors ship in ``resources/priors/`` (safetensors + a card with ``"role": "prior"``), apart
from the classifiers: a prior is never traversed, and never a judge.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from trav_gui.engine.data.datasets import get_dataset
from trav_gui.engine.files import sha256_of
from trav_gui.engine.models.card import ModelCard, read_card
from trav_gui.engine.models.errors import ModelLoadError, PriorLoadError
from trav_gui.engine.models.weights import save_weights
from trav_gui.paths import priors_dir

__all__ = ["PRIOR_ARCHITECTURES", "DenoisingAE", "RealismCritic", "ScoreUNet", "load_prior", "save_prior"]


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class DenoisingAE(nn.Module):
    """A convolutional denoising autoencoder: 28×28 → 7×7×16 → 28×28, output in [0, 1].

    ``forward(x, sigma)`` returns the clean-image estimate ``D(x)`` (N, C, H, W); ``sigma`` is
    accepted for a common interface and ignored (it was trained at one σ, on its card).
    H and W must be multiples of 4.
    """

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        c = channels
        self.encode = nn.Sequential(_conv(c, 32, 2), nn.SiLU(), _conv(32, 64, 2), nn.SiLU(), nn.Conv2d(64, 16, 1))
        self.decode = nn.Sequential(nn.Conv2d(16, 64, 1), nn.SiLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.SiLU(),
                                    nn.ConvTranspose2d(32, c, 4, 2, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        return self.decode(self.encode(x))


class ScoreUNet(nn.Module):
    """A noise-conditional denoiser: a two-level U-Net that predicts the added noise.

    ``forward(x, sigma)`` with ``x`` (N, C, H, W) (H and W multiples of 4) and ``sigma`` a float
    or (N,) returns the clean-image estimate ``D(x, σ) = x − σ·ε̂(x, σ)``. The network sees log σ
    as an extra input channel at full and at quarter size. At the default ``width`` 32, 0.37 M
    parameters: one call on 900 images costs about as much as a SmallCNN forward and backward pass.
    The parameters grow with the square of ``width``.
    """

    def __init__(self, width: int = 32, channels: int = 1) -> None:
        super().__init__()
        w = width
        self.inc = nn.Sequential(_conv(channels + 1, w), nn.SiLU(), _conv(w, w), nn.SiLU())
        self.down1 = nn.Sequential(_conv(w, 2 * w, 2), nn.SiLU(), _conv(2 * w, 2 * w), nn.SiLU())
        self.down2 = nn.Sequential(_conv(2 * w, 2 * w, 2), nn.SiLU())
        self.mid = nn.Sequential(_conv(2 * w + 1, 2 * w), nn.SiLU(), _conv(2 * w, 2 * w), nn.SiLU())
        self.up2 = nn.ConvTranspose2d(2 * w, 2 * w, 4, 2, 1)
        self.dec2 = nn.Sequential(_conv(4 * w, 2 * w), nn.SiLU())
        self.up1 = nn.ConvTranspose2d(2 * w, w, 4, 2, 1)
        self.dec1 = nn.Sequential(_conv(2 * w, w), nn.SiLU(), nn.Conv2d(w, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        n = x.shape[0]
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(n)
        log_s = s.log().view(n, 1, 1, 1)
        h1 = self.inc(torch.cat([x, log_s.expand(n, 1, *x.shape[2:])], 1))
        h2 = self.down1(h1)
        h3 = self.down2(h2)
        h3 = self.mid(torch.cat([h3, log_s.expand(n, 1, *h3.shape[2:])], 1))
        h = self.dec2(torch.cat([self.up2(h3), h2], 1))
        eps = self.dec1(torch.cat([self.up1(h), h1], 1))
        return x - s.view(n, 1, 1, 1) * eps


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalized 1-D Gaussian of standard deviation ``sigma`` px, cut at 3σ (at least 3 taps). Not
    torchvision's ``gaussian_blur``: that reflects the edges, and the critic's blur replicates them."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


class RealismCritic(nn.Module):
    """A realism critic: ``forward(x)`` (N, C, H, W) → (N,) logits, > 0 for "a real image".

    Four 3×3 convolutions (32, 32, 64, 64 channels; 2×2 max-pooling after the second and the
    fourth) and two linear layers (128, 1): 0.47 M parameters at 28×28 (the first linear layer's
    size follows the image's). ``sigma`` is accepted for the priors' common interface and ignored.

    ``blur`` > 0: the critic sees its input through a fixed Gaussian blur of that many pixels
    (separable, edges replicated; not a weight, so its files are a sharp critic's). It then cannot
    see pixel texture, only shape, and its input gradient is blurred alike: a step up its logit
    moves strokes, and cannot add speckle.
    """

    def __init__(self, channels: int = 1, size: tuple[int, int] = (28, 28), blur: float = 0.0) -> None:
        super().__init__()
        if not (blur >= 0 and math.isfinite(blur)):
            raise ValueError(f"blur must be a finite number of pixels >= 0, got {blur!r}")
        self.blur = float(blur)
        self.register_buffer("kernel", _gaussian_kernel(self.blur) if self.blur > 0 else torch.ones(1),
                             persistent=False)
        self.net = nn.Sequential(_conv(channels, 32), nn.ReLU(), _conv(32, 32), nn.ReLU(), nn.MaxPool2d(2),
                                 _conv(32, 64), nn.ReLU(), _conv(64, 64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(64 * (size[0] // 4) * (size[1] // 4), 128), nn.ReLU(), nn.Linear(128, 1))

    def blurred(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the critic sees it: blurred by ``blur`` px (``x`` itself when 0)."""
        if self.blur <= 0:
            return x
        c, r = x.shape[1], (len(self.kernel) - 1) // 2
        k = self.kernel.to(x.dtype)
        x = nn.functional.pad(x, (r, r, r, r), mode="replicate")
        x = nn.functional.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        return self.net(self.blurred(x))[:, 0]


PRIOR_ARCHITECTURES: dict[str, type[nn.Module]] = {"dae": DenoisingAE, "score": ScoreUNet, "critic": RealismCritic}


def _resolve(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.suffix != ".safetensors":
        if os.sep in str(name_or_path) or "/" in str(name_or_path):
            raise PriorLoadError(f"{name_or_path}: a prior is a .safetensors file with a card beside it")
        path = priors_dir() / f"{name_or_path}.safetensors"
    if not path.is_file():
        known = sorted(p.stem for p in priors_dir().glob("*.safetensors"))
        raise PriorLoadError(f"no prior {str(name_or_path)!r}; shipped priors: {', '.join(known) or 'none'} "
                             "(train one with python -m training.train_prior)")
    return path


def load_prior(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """A prior in eval mode (parameters frozen) and its card.

    Parameters
    ----------
    name_or_path : a shipped prior's name (``"score-mnist"``, ``"dae-mnist"``) or a
        ``.safetensors`` path with its ``.json`` card beside it.

    Raises
    ------
    PriorLoadError : missing or corrupt files, an unknown kind, or a card whose sha256 does not
        match the weights.
    """
    path = _resolve(name_or_path)
    card_file = path.with_suffix(".json")
    try:
        card = read_card(path, strict=True)
    except ModelLoadError as exc:
        raise PriorLoadError(str(exc)) from None
    if card is None:
        raise PriorLoadError(f"{path.name}: its card {card_file.name} is missing")
    kind = card.prior
    if kind not in PRIOR_ARCHITECTURES:
        raise PriorLoadError(f"{card_file.name}: \"prior\" must be one of {sorted(PRIOR_ARCHITECTURES)}, got {kind!r}")
    if card.sha256 != sha256_of(path):
        raise PriorLoadError(f"{path.name}: its sha256 does not match its card {card_file.name}")
    ds = get_dataset(card.dataset)
    sized = {"width": card.width} if card.width is not None and kind == "score" else {}
    if kind == "critic":
        sized = {"size": ds.size, **({"blur": card.blur} if card.blur else {})}
    model = PRIOR_ARCHITECTURES[kind](channels=ds.channels, **sized)
    try:
        model.load_state_dict(load_file(str(path)))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise PriorLoadError(f"{path.name}: not a {kind} prior ({exc})") from exc
    model.requires_grad_(False)
    return model.eval().to(device), card


def save_prior(model: nn.Module, path: str | os.PathLike, card: dict) -> ModelCard:
    """Write a prior's weights and its card (``"role": "prior"``, sha256 added), atomically."""
    return save_weights(model, path, {**card, "role": "prior"})

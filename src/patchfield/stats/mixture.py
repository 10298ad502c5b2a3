"""High-norm artefact tokens (Darcet et al., ICLR 2024): a two-component Gaussian mixture on log norms.

The fit needs no hand-set cutoff: EM (float64, vectorised over a few deterministic starts from
quantiles) fits one and two Gaussians to the log norms of one image's patch tokens. The norms
count as **bimodal**, and the tokens above the crossover of the two weighted components as
artefacts, when all of these hold:

- ``BIC₁ − BIC₂ ≥ 10`` (very strong evidence for two components; Kass & Raftery 1995);
- separation ``d' = (μ₂ − μ₁) / √((σ₁² + σ₂²)/2) ≥ 2`` (Ashman's D, Ashman et al. 1994: a clean
  separation; an equal mixture of two Gaussians of one width is bimodal exactly when ``d' > 2``);
- the high component holds at most 25% of the tokens (:data:`MAX_SHARE`): artefacts are a few tokens;
- the weighted densities cross between the two means.

Otherwise "none found" (with the reason). A component's standard deviation is kept at least
5% of the sample's, so that two nearly equal tail values cannot form a spike of their own.

Known limits: when the main population has a long upper tail, the fitted high component can be
wide and take the last few tail tokens with the outliers; log norms spread uniformly can pass as
bimodal (d' near 3 with a minority near 25%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

__all__ = ["ArtefactFit", "BIC_MARGIN", "MAX_SHARE", "MIN_SEPARATION", "artefact_tokens", "fit_two_gaussians"]

BIC_MARGIN = 10.0
"""Least ``BIC₁ − BIC₂`` for two components."""
MAX_SHARE = 0.25
"""Largest share of the tokens the high-norm component may hold (artefacts are a few tokens)."""
MIN_SEPARATION = 2.0
"""Least separation ``d'`` of the two components' means."""
_STARTS = ((0.25, 0.75), (0.5, 0.95), (0.5, 1.0), (0.0, 0.5))
_MIN_SD_SHARE = 0.05
_LOG_2PI = math.log(2 * math.pi)


@dataclass
class ArtefactFit:
    """The mixture fit of one image's log norms and the artefact tokens it finds.

    Attributes:
        found: whether the norms are bimodal (see the module docs); ``reason`` says why not.
        tokens: indices of the artefact tokens (patch indices), ascending; empty when none found.
        crossover: the norm (not its log) where the two weighted components cross; ``None`` when none found.
        weights, means, stds: the two components on the log norms (low one first).
        bic1, bic2: BIC of one and of two Gaussians; separation: ``d'``.
    """

    found: bool
    reason: str
    tokens: list[int] = field(default_factory=list)
    crossover: float | None = None
    weights: tuple[float, float] = (math.nan, math.nan)
    means: tuple[float, float] = (math.nan, math.nan)
    stds: tuple[float, float] = (math.nan, math.nan)
    bic1: float = math.nan
    bic2: float = math.nan
    separation: float = math.nan

    def mask(self, n: int) -> torch.Tensor:
        """Boolean ``[n]``, True for the artefact tokens."""
        m = torch.zeros(n, dtype=torch.bool)
        m[self.tokens] = True
        return m

    def to_json(self) -> dict:
        def num(v):
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "found": self.found, "reason": self.reason, "tokens": list(self.tokens), "crossover": num(self.crossover),
            "weights": [num(v) for v in self.weights], "log_means": [num(v) for v in self.means],
            "log_stds": [num(v) for v in self.stds], "bic_1": num(self.bic1), "bic_2": num(self.bic2),
            "separation": num(self.separation),
        }


def _log_normal(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return -0.5 * (_LOG_2PI + var.log() + (x - mean) ** 2 / var)


def fit_two_gaussians(x: torch.Tensor, iterations: int = 500, tol: float = 1e-9
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """EM for a two-component 1-D Gaussian mixture, float64, the best of a few deterministic starts.

    The starts put the means at the ``(0.25, 0.75)``, ``(0.5, 0.95)``, ``(0.5, 1.0)`` and ``(0, 0.5)``
    quantiles with the sample's standard deviation; all are iterated together.

    Returns:
        ``(weights [2], means [2], variances [2], log-likelihood)``, components sorted by mean.
    """
    x = x.detach().flatten().to(torch.float64).cpu()
    n = x.numel()
    if n < 2:
        raise ValueError(f"a mixture needs at least 2 values, got {n}")
    var_x = x.var(correction=0)
    floor = max(float(var_x) * _MIN_SD_SHARE**2, 1e-12)
    q = torch.tensor(_STARTS, dtype=torch.float64)                 # [S, 2]
    means = torch.quantile(x, q.flatten()).reshape(q.shape)       # [S, 2]
    variances = torch.full_like(means, max(float(var_x), floor))
    weights = torch.full_like(means, 0.5)
    previous = torch.full((len(_STARTS),), -math.inf, dtype=torch.float64)
    for _ in range(iterations):
        joint = weights.log()[:, None, :] + _log_normal(x[None, :, None], means[:, None, :], variances[:, None, :])
        total = torch.logsumexp(joint, dim=-1)                     # [S, n]
        loglik = total.sum(-1)                                     # [S]
        resp = (joint - total[..., None]).exp()                    # [S, n, 2]
        mass = resp.sum(1).clamp_min(1e-300)                       # [S, 2]
        weights = mass / n
        means = (resp * x[None, :, None]).sum(1) / mass
        variances = ((resp * (x[None, :, None] - means[:, None, :]) ** 2).sum(1) / mass).clamp_min(floor)
        if float((loglik - previous).abs().max()) < tol * n:  # every start has converged
            break
        previous = loglik
    joint = weights.log()[:, None, :] + _log_normal(x[None, :, None], means[:, None, :], variances[:, None, :])
    loglik = torch.logsumexp(joint, dim=-1).sum(-1)
    best = int(torch.argmax(loglik))  # the first best start on ties: deterministic
    order = torch.argsort(means[best])
    return weights[best][order], means[best][order], variances[best][order], float(loglik[best])


def _crossover(w: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> float | None:
    """The point between the means where ``w₁·N(μ₁, σ₁²)`` and ``w₂·N(μ₂, σ₂²)`` cross, or ``None``."""
    (w1, w2), (m1, m2), (v1, v2) = w.tolist(), m.tolist(), v.tolist()

    def g(t: float) -> float:  # log(w2 N2) - log(w1 N1)
        return (math.log(w2) - 0.5 * math.log(v2) - (t - m2) ** 2 / (2 * v2)
                - math.log(w1) + 0.5 * math.log(v1) + (t - m1) ** 2 / (2 * v1))

    if not (g(m1) < 0 < g(m2)):
        return None
    a = 1 / (2 * v1) - 1 / (2 * v2)
    b = m2 / v2 - m1 / v1
    c = m1 * m1 / (2 * v1) - m2 * m2 / (2 * v2) + math.log(w2 / w1) + 0.5 * math.log(v1 / v2)
    if abs(a) < 1e-12 * max(abs(b), 1e-300):
        return -c / b
    disc = math.sqrt(max(b * b - 4 * a * c, 0.0))
    roots = [(-b - disc) / (2 * a), (-b + disc) / (2 * a)]
    inside = [r for r in roots if m1 <= r <= m2]
    return min(inside, key=lambda r: abs(g(r))) if inside else None


def artefact_tokens(norms: torch.Tensor) -> ArtefactFit:
    """Find the high-norm artefact tokens among one image's patch-token norms ``[N]`` (criteria in the module docs).

    >>> norms = torch.cat([torch.linspace(9, 11, 60), torch.tensor([100., 105.])])
    >>> fit = artefact_tokens(norms)
    >>> fit.found, fit.tokens
    (True, [60, 61])
    """
    if not isinstance(norms, torch.Tensor) or norms.dim() != 1:
        raise ValueError(f"norms must be a 1-D tensor of one image's token norms, got {getattr(norms, 'shape', norms)}")
    if not bool(torch.isfinite(norms).all()) or bool((norms <= 0).any()):
        raise ValueError("token norms must be finite and positive")
    x = norms.detach().to(torch.float64).cpu().log()
    n = x.numel()
    if n < 8:
        return ArtefactFit(False, f"too few tokens ({n} < 8) for a mixture fit")
    var = float(x.var(correction=0))
    if var <= 0:
        return ArtefactFit(False, "all norms are equal")
    loglik1 = -0.5 * n * (_LOG_2PI + math.log(var) + 1)
    bic1 = -2 * loglik1 + 2 * math.log(n)
    w, m, v, loglik2 = fit_two_gaussians(x)
    bic2 = -2 * loglik2 + 5 * math.log(n)
    sep = float((m[1] - m[0]) / torch.sqrt((v[0] + v[1]) / 2))
    fit = ArtefactFit(False, "", weights=tuple(w.tolist()), means=tuple(m.tolist()),
                      stds=tuple(v.sqrt().tolist()), bic1=bic1, bic2=bic2, separation=sep)
    if bic1 - bic2 < BIC_MARGIN:
        fit.reason = f"not bimodal: BIC of 1 minus 2 components is {bic1 - bic2:.1f} < {BIC_MARGIN:g}"
        return fit
    if sep < MIN_SEPARATION:
        fit.reason = f"not bimodal: separation d' = {sep:.2f} < {MIN_SEPARATION:g}"
        return fit
    if float(w[1]) > MAX_SHARE:
        fit.reason = (f"no artefacts: the high component holds {float(w[1]):.0%} of the tokens "
                      f"(at most {MAX_SHARE:.0%} for a few artefact tokens)")
        return fit
    cross = _crossover(w, m, v)
    if cross is None:
        fit.reason = "not bimodal: the weighted components do not cross between their means"
        return fit
    tokens = torch.nonzero(x > cross).flatten().tolist()
    if not tokens:
        fit.reason = "no token above the crossover"
        return fit
    fit.found, fit.reason, fit.tokens, fit.crossover = True, "bimodal", tokens, math.exp(cross)
    return fit

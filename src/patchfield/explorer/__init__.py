"""An interactive explorer: one self-contained HTML page per image (no network, no CDN).

The page embeds the image (PNG), ``U`` in float32 (so its window selections match Python's
exactly), torch's float32 column variances (DIP's ranking), and the attention of every layer
(mean of heads) and the per-head variance across layers, each row quantised to ``uint8`` with
its own scale; the full per-layer, per-head attention is embedded when it is small enough.
Windows, ``D`` and responsive fields are recomputed in the page for any ``alpha``/``beta``
with the same tie-breaking as :mod:`patchfield.windows` and :mod:`patchfield.dip`.
"""

from .build import explorer_html, explorer_payload, write_explorer
from .inline import explore

__all__ = ["explore", "explorer_html", "explorer_payload", "write_explorer"]

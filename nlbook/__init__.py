"""nlbook — the package behind the executable book on fusing self-attention with CNNs.

Each chapter of the book has one module here::

    1 CNN basics              nlbook.cnn
    2 Self-attention          nlbook.attention
    3 Non-local blocks        nlbook.nonlocal_block
    4 Vision Transformer      nlbook.vit
    5 Hybrid modules          nlbook.hybrid
    6 Comparison              nlbook.bench, nlbook.zoo
    7 A long-range task       nlbook.longrange
    A Scaling out             nlbook.distributed (with nlbook.train)

shared by all of them: nlbook.runtime (device, profile, seeding), nlbook.data, nlbook.train, nlbook.viz.
"""

from nlbook.runtime import RunContext, setup
from nlbook.version import __version__

__all__ = ["RunContext", "__version__", "setup"]

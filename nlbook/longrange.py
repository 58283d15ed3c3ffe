"""Chapter 7 — Where attention pays: a generated task whose label needs two far-apart image regions.

Every image holds exactly two small glyphs on a black background; the label says whether they are the
**same glyph** (class 1) or different (class 0). The knob is the *distance* between them: the Chebyshev
(L∞) distance, in pixels, between the glyphs' top-left corners — how far apart, horizontally or vertically,
two pixels must be for a model to compare them.

Why this label, and why a CNN with global average pooling cannot solve it beyond its receptive field
------------------------------------------------------------------------------------------------------
A CNN like :class:`nlbook.cnn.ResNet` ends in global average pooling and a *linear* head, so its logit
difference is a **sum of local terms**: ``Σ_p h(window_p)`` over the last stage's positions ``p``, each
term a function of the r×r input window that position sees (``r`` = receptive field). When the glyphs are
so far apart that no window contains pixels of both — distance ``d ≥ r + g − 1`` for ``g``×``g`` glyphs,
:func:`critical_distance` — the logit splits into ``u(glyph 1) + v(glyph 2) + c``. Take any two glyphs
``a ≠ b`` at fixed positions: the four images ``(a, a), (b, b), (a, b), (b, a)`` would need
``u(a) + v(a) > t``, ``u(b) + v(b) > t`` but ``u(a) + v(b) < t``, ``u(b) + v(a) < t`` — impossible, the two
pairs of sums are equal. The sampler draws exactly these quadruples with equal probability (an unordered
pair ``{a, b}``, then one of the four arrangements), so **such a CNN is wrong on at least one image in four:
its accuracy is at most 75 %**, whatever it learns (and lower in practice: ≈ 2/3 with 4 glyph types).
Global average pooling can *count* glyph types, but a linear read-out of counts cannot decide "same".
A model that lets one position read another — a non-local block (Wang et al., 2018), a ViT (Dosovitskiy
et al., 2021), attention in a hybrid — has no such limit. The task is in the spirit of the Long Range
Arena (Tay et al., 2021) and its Pathfinder task (Linsley et al., 2018), reduced to one controlled knob.

Generation is vectorised (no Python loop over images): the random numbers come from a seeded CPU
:class:`torch.Generator` — the same seed gives the same images on every device — and the images are
assembled with one indexed write per glyph on the target device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from einops import rearrange

from nlbook.checks import (
    check_bool,
    check_device,
    check_int,
    check_tensor,
    is_int,
    is_real,
)

__all__ = [
    "CLASSES",
    "PALETTE",
    "TEST_SEED",
    "LongRangeBatch",
    "LongRangeTask",
    "critical_distance",
    "glyph_cells",
    "render",
]

CLASSES = ("different", "same")
TEST_SEED = 1_000_003
"""Seed of the fixed test split: independent of the training seed, so every training run is scored on the
same test images."""

# Eight well-separated colours (RGB). Glyph k is drawn in PALETTE[k % 8] (or white if colored=False).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),  # red
    (60, 180, 75),  # green
    (0, 130, 200),  # blue
    (255, 225, 25),  # yellow
    (240, 50, 230),  # magenta
    (70, 240, 240),  # cyan
    (245, 130, 48),  # orange
    (255, 255, 255),  # white
)
_ALPHABET_SEED = 20180618  # glyph shapes are fixed per (num_glyphs, glyph_size, colored), whatever the data seed


def critical_distance(receptive_field: int, glyph_size: int = 3) -> int:
    """The smallest glyph distance at which no ``receptive_field``-wide window sees pixels of both glyphs.

    Along the axis where the glyphs are ``d`` apart, glyph 1 covers pixels ``0 … g−1`` and glyph 2 covers
    ``d … d+g−1``; a window of ``r`` pixels reaches from one to the other iff ``r ≥ d − g + 2``. So from
    ``d = r + g − 1`` on, every output of the CNN sees at most one glyph.
    """
    for name, value in (
        ("receptive_field", receptive_field),
        ("glyph_size", glyph_size),
    ):
        if not is_int(value) or value < 1:
            raise ValueError(
                f"critical_distance: {name} must be an int >= 1, got {value!r}"
            )
    return int(receptive_field) + int(glyph_size) - 1


@dataclass(frozen=True)
class LongRangeBatch:
    """Generated images with everything needed to inspect them.

    Attributes:
        images: uint8 (N, 3, H, W).
        labels: int64 (N,), 1 = the two glyphs are the same.
        positions: int64 (N, 2, 2): top-left corner (row, col) of glyph 0 and glyph 1.
        glyph_ids: int64 (N, 2): which glyph of the alphabet is drawn at each position.
        distances: int64 (N,): Chebyshev distance between the two positions.
    """

    images: torch.Tensor
    labels: torch.Tensor
    positions: torch.Tensor
    glyph_ids: torch.Tensor
    distances: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]


def _check_int(where: str, name: str, value: object, low: int) -> int:
    if not is_int(value) or value < low:
        raise ValueError(f"{where}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LongRangeTask:
    """The task's knobs, validated once; :meth:`sample` draws a batch.

    Args:
        image_size: side of the square images.
        distance: Chebyshev distance between the glyphs' top-left corners, in pixels — one int, or an
            inclusive range ``(low, high)`` drawn uniformly per image. ``None``: every distance the image
            allows, ``(glyph_size + 1, image_size − glyph_size)``.
        glyph_size: glyphs are ``glyph_size``×``glyph_size`` binary patterns.
        num_glyphs: size of the glyph alphabet (>= 2: "different" needs two glyphs).
        noise: fraction of pixels lit in random palette colours as distractors (``round(noise·H·W)``
            random pixels per image, drawn with replacement; glyph tiles are drawn over them).
        colored: draw glyph ``k`` in ``PALETTE[k % 8]``; ``False`` draws all glyphs white, so only the
            shape tells them apart.
    """

    image_size: int = 32
    distance: int | tuple[int, int] | None = None
    glyph_size: int = 3
    num_glyphs: int = 4
    noise: float = 0.0
    colored: bool = True
    _alphabet: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = "LongRangeTask"
        # plain Python values in the (frozen) fields: numpy numbers pass, but would leak into reprs and records
        object.__setattr__(
            self, "image_size", _check_int(where, "image_size", self.image_size, 2)
        )
        object.__setattr__(
            self, "glyph_size", _check_int(where, "glyph_size", self.glyph_size, 1)
        )
        check_bool(
            where, "colored", self.colored
        )  # "no" would be truthy: coloured glyphs nobody asked for
        if not is_int(self.num_glyphs) or self.num_glyphs < 2:
            raise ValueError(
                f"{where}: num_glyphs must be an int >= 2 (a 'different' pair needs two distinct glyphs), "
                f"got {self.num_glyphs!r}"
            )
        if not is_real(self.noise) or not 0.0 <= self.noise < 1.0:
            raise ValueError(
                f"{where}: noise must be a fraction in [0, 1), got {self.noise!r}"
            )
        object.__setattr__(self, "num_glyphs", int(self.num_glyphs))
        object.__setattr__(self, "noise", float(self.noise))
        object.__setattr__(self, "colored", bool(self.colored))
        self.distance_range  # noqa: B018 - validates distance against image_size and glyph_size
        object.__setattr__(
            self,
            "_alphabet",
            _make_alphabet(self.num_glyphs, self.glyph_size, self.colored),
        )

    @property
    def max_distance(self) -> int:
        """The largest distance two glyphs can have inside the image."""
        return self.image_size - self.glyph_size

    @property
    def min_distance(self) -> int:
        """The smallest distance with at least one background pixel between the glyphs."""
        return self.glyph_size + 1

    @property
    def distance_range(self) -> tuple[int, int]:
        """``(low, high)`` of the distances drawn, validated against the image and glyph size."""
        lo_ok, hi_ok = self.min_distance, self.max_distance
        if lo_ok > hi_ok:
            raise ValueError(
                f"LongRangeTask: glyph_size {self.glyph_size} is too big for image_size {self.image_size}: two "
                f"{self.glyph_size}×{self.glyph_size} glyphs with a gap need image_size >= {2 * self.glyph_size + 1}"
            )
        d = self.distance
        if d is None:
            return lo_ok, hi_ok
        if not is_int(d) and not isinstance(d, (tuple, list)):
            raise ValueError(
                f"LongRangeTask: distance must be an int, a (low, high) pair or None, got {d!r}"
            )
        lo, hi = (d, d) if is_int(d) else tuple(d) if len(d) == 2 else (None, None)
        if not all(is_int(v) for v in (lo, hi)) or lo > hi:
            raise ValueError(
                f"LongRangeTask: distance must be an int or a (low, high) pair with low <= high, got {d!r}"
            )
        if lo < lo_ok or hi > hi_ok:
            raise ValueError(
                f"LongRangeTask: distance {d!r} is outside [{lo_ok}, {hi_ok}], the distances two "
                f"{self.glyph_size}×{self.glyph_size} glyphs can have in a {self.image_size}×{self.image_size} "
                f"image without touching (glyph_size + 1 to image_size - glyph_size)"
            )
        return int(lo), int(hi)

    def alphabet(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The glyphs as uint8 RGB tiles, (num_glyphs, 3, glyph_size, glyph_size)."""
        device = check_device("LongRangeTask.alphabet", "device", device)
        return (
            self._alphabet.to(device) if device is not None else self._alphabet.clone()
        )

    def critical_distance(self, receptive_field: int) -> int:
        """:func:`critical_distance` for this task's glyph size."""
        return critical_distance(receptive_field, self.glyph_size)

    def sample(
        self,
        n: int,
        seed: int | None = None,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> LongRangeBatch:
        """Draw ``n`` images (exactly ``n // 2`` of them "same", shuffled).

        Randomness comes from ``generator`` or a CPU generator seeded with ``seed``
        (one of the two is
        required), so a seed gives the same batch on every device. The images are built
        on ``device``.
        """
        n = _check_int("LongRangeTask.sample", "n", n, 1)
        g = _generator(seed, generator)
        device = check_device("LongRangeTask.sample", "device", device) or torch.device(
            "cpu"
        )
        ids, labels = _sample_glyph_ids(n, self.num_glyphs, g)
        positions, distances = _sample_positions(
            n, self.image_size, self.glyph_size, self.distance_range, g
        )
        background = None
        if self.noise > 0:
            # round(noise·H·W) random pixels per image (drawn with replacement) get a
            # random palette colour:
            # O(n·lit) random numbers instead of O(n·H·W), and one scatter on the
            # device.
            size = self.image_size
            lit = max(1, round(self.noise * size * size))
            where_lit = torch.randint(size * size, (n, 1, lit), generator=g).expand(
                n, 3, lit
            )
            colour = torch.tensor(PALETTE, dtype=torch.uint8)[
                torch.randint(len(PALETTE), (n, lit), generator=g)
            ]
            flat = torch.zeros(n, 3, size * size, dtype=torch.uint8, device=device)
            flat.scatter_(
                2, where_lit.to(device), rearrange(colour, "n l c -> n c l").to(device)
            )
            background = rearrange(flat, "n c (h w) -> n c h w", h=size)
        images = render(
            self.alphabet(device),
            ids.to(device),
            positions.to(device),
            self.image_size,
            background,
        )
        return LongRangeBatch(
            images,
            labels.to(device),
            positions.to(device),
            ids.to(device),
            distances.to(device),
        )


def _generator(seed: object, generator: object) -> torch.Generator:
    """``generator``, or a CPU generator seeded with ``seed`` — exactly one of them. A CPU generator, so that
    a seed gives the same batch on every device; a seed >= 0 (torch takes a negative one modulo 2**64: another
    seed than the one shown)."""
    where = "LongRangeTask.sample"
    if (seed is None) == (generator is None):
        raise ValueError(
            "LongRangeTask.sample: pass exactly one of seed= and generator="
        )
    if generator is None:
        return torch.Generator().manual_seed(check_int(where, "seed", seed, low=0))
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{where}: generator must be a torch.Generator, got {type(generator).__name__}"
        )
    if generator.device.type != "cpu":
        raise ValueError(
            f"{where}: generator must be a CPU generator (the same batch on every device), "
            f"got one on {generator.device}"
        )
    return generator


def render(
    alphabet: torch.Tensor,
    glyph_ids: torch.Tensor,
    positions: torch.Tensor,
    image_size: int,
    background: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw glyph ``glyph_ids[i, j]`` with its top-left corner at ``positions[i, j]`` into image ``i``.

    Args:
        alphabet: uint8 (K, C, g, g) glyph tiles (:meth:`LongRangeTask.alphabet`).
        glyph_ids: int64 (N, J). positions: int64 (N, J, 2) as (row, col), each tile fully inside the image.
        background: optional uint8 (N, C, H, W) drawn over (default black); the whole g×g tile, its dark
            pixels included, replaces the background, so a glyph is never corrupted by noise.

    Returns uint8 (N, C, image_size, image_size) on the alphabet's device.
    """
    check_tensor("render", "alphabet", alphabet, shape="(K, C, g, g)")
    check_tensor("render", "glyph_ids", glyph_ids, kind="integer", shape="(N, J)")
    check_tensor("render", "positions", positions, kind="integer", shape="(N, J, 2)")
    if background is not None:
        check_tensor("render", "background", background, shape="(N, C, H, W)")
    if (
        alphabet.dim() != 4
        or alphabet.dtype != torch.uint8
        or alphabet.shape[-1] != alphabet.shape[-2]
    ):
        raise ValueError(
            f"render: alphabet must be uint8 (K, C, g, g), got {alphabet.dtype} {tuple(alphabet.shape)}"
        )
    if glyph_ids.dim() != 2 or positions.shape != (*glyph_ids.shape, 2):
        raise ValueError(
            f"render: expected glyph_ids (N, J) and positions (N, J, 2), got {tuple(glyph_ids.shape)} and "
            f"{tuple(positions.shape)}"
        )
    k, c, gs, _ = alphabet.shape
    image_size = check_int("render", "image_size", image_size, low=gs)
    n = glyph_ids.shape[0]
    dev = alphabet.device
    if glyph_ids.numel() and (int(glyph_ids.min()) < 0 or int(glyph_ids.max()) >= k):
        raise ValueError(
            f"render: glyph_ids must be in [0, {k}), got values in [{int(glyph_ids.min())}, {int(glyph_ids.max())}]"
        )
    if positions.numel() and (
        int(positions.min()) < 0 or int(positions.max()) > image_size - gs
    ):
        raise ValueError(
            f"render: positions must be in [0, {image_size - gs}] so a {gs}×{gs} glyph fits"
        )
    if background is None:
        images = torch.zeros(
            n, c, image_size, image_size, dtype=torch.uint8, device=dev
        )
    else:
        if (
            background.shape != (n, c, image_size, image_size)
            or background.dtype != torch.uint8
        ):
            raise ValueError(
                f"render: background must be uint8 {(n, c, image_size, image_size)}, "
                f"got {background.dtype} {tuple(background.shape)}"
            )
        images = background.to(dev, copy=True)
    offsets = torch.arange(gs, device=dev)
    n_idx = torch.arange(n, device=dev).view(n, 1, 1, 1)
    c_idx = torch.arange(c, device=dev).view(1, c, 1, 1)
    for j in range(
        glyph_ids.shape[1]
    ):  # a loop over the (two) glyph slots, not over images
        rows = (positions[:, j, 0, None].to(dev) + offsets).view(n, 1, gs, 1)
        cols = (positions[:, j, 1, None].to(dev) + offsets).view(n, 1, 1, gs)
        images[n_idx, c_idx, rows, cols] = alphabet[glyph_ids[:, j].to(dev)]
    return images


def glyph_cells(
    positions: torch.Tensor, glyph_size: int, image_size: int, grid: int
) -> torch.Tensor:
    """Which cells of a ``grid``×``grid`` token/feature grid each glyph's box overlaps.

    Args:
        positions: (N, J, 2) top-left corners (row, col), as in :class:`LongRangeBatch`.
        grid: cells per side; ``image_size`` must be a multiple (a cell is ``image_size
        // grid`` pixels —
            a ViT patch, or one position of a feature map at that stride).

    Returns bool (N, J, grid, grid).
    """
    if not is_int(grid) or grid < 1:
        raise ValueError(f"glyph_cells: grid must be a positive int, got {grid!r}")
    check_tensor(
        "glyph_cells", "positions", positions, kind="integer", shape="(N, J, 2)"
    )
    glyph_size = check_int("glyph_cells", "glyph_size", glyph_size, low=1)
    image_size = check_int("glyph_cells", "image_size", image_size, low=1)
    grid = int(grid)
    if image_size % grid:
        raise ValueError(
            f"glyph_cells: image_size {image_size} is not a multiple of grid {grid}"
        )
    if positions.dim() != 3 or positions.shape[-1] != 2:
        raise ValueError(
            f"glyph_cells: positions must be (N, J, 2), got {tuple(positions.shape)}"
        )
    cell = image_size // grid
    start = (
        torch.arange(grid, device=positions.device) * cell
    )  # first pixel of each cell
    # A box [p, p + g) overlaps a cell [s, s + cell) iff s < p + g and s + cell > p.
    p = positions[..., None]  # (N, J, 2, 1)
    overlap = (start < p + glyph_size) & (start + cell > p)  # (N, J, 2, grid)
    return overlap[..., 0, :, None] & overlap[..., 1, None, :]


def _make_alphabet(num_glyphs: int, glyph_size: int, colored: bool) -> torch.Tensor:
    """``num_glyphs`` distinct glyph tiles (uint8 (K, 3, g, g)), fixed for given arguments.

    Shapes are random binary patterns with at least half of the pixels lit and every row and column
    touched (so each glyph spans its whole g×g box). Two glyphs differ in shape or colour (with
    ``colored=False``: in shape).
    """
    g = torch.Generator().manual_seed(_ALPHABET_SEED + 97 * glyph_size + num_glyphs)
    palette = torch.tensor(PALETTE, dtype=torch.uint8)
    white = torch.tensor(PALETTE[-1], dtype=torch.uint8)
    seen: set[tuple] = set()
    tiles = []
    for _attempt in range(
        20_000
    ):  # a loop over the alphabet (K tiles), not over images
        k = len(tiles)
        if k == num_glyphs:
            break
        pattern = torch.rand(glyph_size, glyph_size, generator=g) < 0.6
        if glyph_size == 1:
            pattern = torch.ones(1, 1, dtype=torch.bool)
        if 2 * int(pattern.sum()) < glyph_size * glyph_size or not (
            pattern.any(0).all() and pattern.any(1).all()
        ):
            continue
        colour = palette[k % len(PALETTE)] if colored else white
        key = (tuple(pattern.flatten().tolist()), tuple(colour.tolist()))
        if key in seen:
            continue
        seen.add(key)
        tiles.append(pattern.to(torch.uint8)[None] * colour.view(3, 1, 1))
    if len(tiles) < num_glyphs:
        raise ValueError(
            f"LongRangeTask: cannot make {num_glyphs} distinct {glyph_size}×{glyph_size} glyphs"
            f"{'' if colored else ' without colour'}; use fewer num_glyphs, a larger glyph_size"
            f"{'' if colored else ' or colored=True'}"
        )
    return torch.stack(tiles)


def _sample_glyph_ids(
    n: int, k: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Glyph ids (n, 2) and labels (n,), exactly balanced, drawn as "XOR quadruples".

    An unordered pair {a, b} of distinct glyphs is drawn uniformly, then one of (a, a),
    (b, b), (a, b),
    (b, a): each arrangement of each pair is equally likely, which is what bounds a
    sum-of-local-evidence
    classifier at 75 % (module docstring).
    """
    labels = (torch.arange(n) % 2)[torch.randperm(n, generator=g)]
    a = torch.randint(k, (n,), generator=g)
    b = (
        a + torch.randint(1, k, (n,), generator=g)
    ) % k  # uniform over the k - 1 other glyphs
    coin = torch.randint(2, (n,), generator=g).bool()
    first = torch.where(coin, a, b)
    # same: (first, first); different: (first, the other one of the pair)
    second = torch.where(labels.bool(), first, torch.where(coin, b, a))
    return torch.stack([first, second], dim=1), labels


def _sample_positions(
    n: int, size: int, gs: int, distance_range: tuple[int, int], g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners (n, 2, 2) of two glyphs at Chebyshev distance d ~ U{low..high}, uniform placement."""
    lo, hi = distance_range
    d = torch.randint(lo, hi + 1, (n,), generator=g)
    # The offset (dy, dx) has max(|dy|, |dx|) = d: one axis (random) at ±d, the other uniform in [-d, d].
    along_rows = torch.randint(2, (n,), generator=g).bool()
    sign = torch.randint(2, (n,), generator=g) * 2 - 1
    other = torch.floor(torch.rand(n, generator=g) * (2 * d + 1)).long() - d
    dy = torch.where(along_rows, sign * d, other)
    dx = torch.where(along_rows, other, sign * d)
    # Glyph 0 uniform over the corners that keep both glyphs inside: [max(0, -δ), size - gs - max(0, δ)].
    u = torch.rand(n, 2, generator=g)

    def place(delta: torch.Tensor, ui: torch.Tensor) -> torch.Tensor:
        low = (-delta).clamp(min=0)
        count = size - gs - delta.abs() + 1
        return low + torch.floor(ui * count).long().clamp(max=count - 1)

    y0, x0 = place(dy, u[:, 0]), place(dx, u[:, 1])
    positions = torch.stack(
        [torch.stack([y0, x0], 1), torch.stack([y0 + dy, x0 + dx], 1)], dim=1
    )
    return positions, d

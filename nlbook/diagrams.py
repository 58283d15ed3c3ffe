"""Chapters 1–5 — architecture diagrams: each block's data flow with the shape of every tensor, drawn by code.

Every model the book teaches has one function here that draws it the way its paper does — boxes for operations,
arrows for data flow, each arrow labelled with its tensor's shape (``B×C×H×W``, ``B×N×D``), residual paths at
the side, ⊕ for addition and ⊗ for a broadcast product::

    from nlbook.diagrams import draw_se
    draw_se();

=========================================  ========  ==============================================
function                                   chapter   production module it is checked against
=========================================  ========  ==============================================
:func:`draw_basic_block`                   1         :class:`nlbook.cnn.BasicBlock`
:func:`draw_attention`                     2         :func:`nlbook.attention.scaled_dot_product_attention`
:func:`draw_multi_head_attention`          2         :class:`~nlbook.attention.MultiHeadAttention` (tokens),
                                                     :class:`~nlbook.attention.MultiHeadSelfAttention2d` (2-D)
:func:`draw_nonlocal_block`                3         :class:`nlbook.nonlocal_block.NonLocalBlock2d`
:func:`draw_patch_embedding`               4         :class:`nlbook.vit.PatchEmbedding`
:func:`draw_encoder_block`                 4         :class:`nlbook.vit.EncoderBlock`
:func:`draw_vit`                           4         :class:`nlbook.vit.VisionTransformer`
:func:`draw_se`, :func:`draw_cbam`         5         :class:`nlbook.hybrid.SqueezeExcitation`, ``CBAM``
:func:`draw_bot_block`                     5         :class:`nlbook.hybrid.BoTBlock`
:func:`draw_mbconv`                        5         :class:`nlbook.coatnet.MBConv`
:func:`draw_transformer_block_2d`          5         :class:`nlbook.coatnet.TransformerBlock2d`
:func:`draw_window_attention`              5         :class:`nlbook.local_attention.WindowAttention`
:func:`draw_local_attention`               5         :class:`nlbook.local_attention.LocalSelfAttention2d`
=========================================  ========  ==============================================

Each ``draw_*`` function is ``*_diagram(...).draw(ax)``: the ``*_diagram`` function returns the declarative
:class:`Diagram` — nodes, edges, symbolic shapes — and that description is what the tests hold against the code.
A box may name the production sub-module it stands for (``module="conv1"``); :func:`shapes_from` runs the real
module once with forward hooks, and :meth:`Diagram.check` compares every such box's output shape with the
diagram's symbolic one evaluated at the same sizes. A diagram that drifts from the code fails a test.

Shapes are strings of dimensions joined by ``×``; a dimension is a small expression of symbols (``2C``, ``H/2``,
``H·W``, ``N+1``, ``C/r``, ``p²``). An arrow without a label carries the shape of the arrow before it.
"""

from __future__ import annotations

import ast
import inspect
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Circle, FancyBboxPatch
from matplotlib.textpath import TextPath
from torch import nn

from nlbook.checks import check_bool, check_module, check_str, is_int, is_real

__all__ = [
    "DIAGRAMS",
    "KIND_STYLE",
    "Diagram",
    "Edge",
    "Node",
    "attention_diagram",
    "basic_block_diagram",
    "bot_block_diagram",
    "cbam_diagram",
    "draw_attention",
    "draw_basic_block",
    "draw_bot_block",
    "draw_cbam",
    "draw_encoder_block",
    "draw_legend",
    "draw_mbconv",
    "draw_multi_head_attention",
    "draw_nonlocal_block",
    "draw_patch_embedding",
    "draw_se",
    "draw_transformer_block_2d",
    "draw_vit",
    "draw_local_attention",
    "draw_window_attention",
    "encoder_block_diagram",
    "eval_shape",
    "mbconv_diagram",
    "multi_head_attention_diagram",
    "nonlocal_block_diagram",
    "patch_embedding_diagram",
    "se_diagram",
    "shapes_from",
    "transformer_block_2d_diagram",
    "vit_diagram",
    "local_attention_diagram",
    "window_attention_diagram",
]

Kind = Literal[
    "input",
    "conv",
    "attention",
    "norm",
    "activation",
    "pooling",
    "linear",
    "reshape",
    "embedding",
    "op",
    "junction",
]

# One colour per kind of operation, the same in every chapter: (face, edge). Orange is where positions mix.
KIND_STYLE: dict[str, tuple[str, str]] = {
    "conv": ("#d4e4f4", "#3b6ea5"),
    "attention": ("#fde0c2", "#c46a12"),
    "norm": ("#fbf0b5", "#a88d12"),
    "activation": ("#d8ecd2", "#4b8a3a"),
    "pooling": ("#e6dcf2", "#7453a0"),
    "linear": ("#f7d3da", "#ad4358"),
    "reshape": ("#ececec", "#7a7a7a"),
    "embedding": ("#cfeae5", "#2b8575"),
    "input": ("none", "none"),
    "op": ("white", "#333333"),
    "junction": ("#333333", "#333333"),
}
_LEGEND_KINDS = (
    "conv",
    "linear",
    "norm",
    "activation",
    "pooling",
    "attention",
    "embedding",
    "reshape",
)

COL = 1.75  # inches between column centres
ROW = 0.5  # inches between row centres
BOX_WIDTH = 1.45  # minimum box width, inches
BOX_HEIGHT = 0.28
OP_RADIUS = 0.11
DOT_RADIUS = 0.03
PAD = 0.1  # text padding inside a box, inches
FONT = 9.0  # box labels, points
SMALL = 8.0  # shape labels, points
TITLE = 10.0
LINE = "#333333"
SHAPE_COLOUR = "#3f3f3f"
MAX_WIDTH = 7.0  # the book's text width, inches


# --------------------------------------------------------------------------------------------------------------
# Symbolic shapes
# --------------------------------------------------------------------------------------------------------------

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


def _to_python(expr: str) -> str:
    """'2C′/4' → '2*C_p/4': the display notation as a Python expression (implicit products made explicit)."""
    src = expr.replace("·", "*").replace("²", "**2").replace("′", "_p").replace("…", "")
    return re.sub(r"(\d)\s*([A-Za-z_(])", r"\1*\2", src)


def _eval_dim(
    expr: str,
    sizes: Mapping[str, int],
    definitions: Mapping[str, str],
    where: str,
    _expanding: frozenset[str] = frozenset(),
) -> Fraction:
    try:
        tree = ast.parse(_to_python(expr), mode="eval")
    except (
        SyntaxError
    ):  # Python's message would point into the translated text, not the dimension
        raise ValueError(
            f"{where}: cannot read dimension {expr!r}; a dimension is a symbol, a number or an expression of them "
            "like 'C/r', 'H·W' or '2C'"
        ) from None
    names = {_to_python(k): v for k, v in sizes.items()}
    defs = {_to_python(k): v for k, v in definitions.items()}

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.Name):
            if node.id in names:
                return Fraction(names[node.id])
            if node.id in defs:
                if node.id in _expanding:
                    raise ValueError(
                        f"{where}: the definition of {node.id.replace('_p', '′')!r} refers to itself"
                    )
                return _eval_dim(
                    defs[node.id], sizes, definitions, where, _expanding | {node.id}
                )
            raise ValueError(
                f"{where}: no size given for symbol {node.id.replace('_p', '′')!r} in {expr!r}"
            )
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            try:
                return Fraction(_BINOPS[type(node.op)](ev(node.left), ev(node.right)))
            except ZeroDivisionError:
                raise ValueError(
                    f"{where}: dimension {expr!r} divides by zero at these sizes"
                ) from None
        raise ValueError(f"{where}: cannot read dimension {expr!r}")

    return ev(tree)


def eval_shape(
    shape: str, sizes: Mapping[str, int], definitions: Mapping[str, str] | None = None
) -> tuple[int, ...]:
    """The numeric shape of a symbolic one: ``eval_shape("B×2C×H/2×W/2", dict(B=2, C=8, H=4, W=4)) == (2, 16, 2, 2)``.

    ``definitions`` names derived symbols (``{"N": "H·W/p²"}``). A dimension that is not a whole number is an
    error: the diagram would promise a shape no tensor can have.
    """
    where = "eval_shape"
    check_str(where, "shape", shape)
    _check_sizes(where, sizes)
    if definitions is not None and (
        not isinstance(definitions, Mapping)
        or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in definitions.items()
        )
    ):
        raise TypeError(
            f"{where}: definitions must be a dict of symbol -> shape expression (both str) or None, "
            f"got {definitions!r}"
        )
    out = []
    for dim in shape.split("×"):
        value = _eval_dim(dim.strip(), sizes, definitions or {}, "eval_shape")
        if value.denominator != 1 or value < 0:
            raise ValueError(
                f"eval_shape: dimension {dim.strip()!r} of {shape!r} is {value}, not a whole number"
            )
        out.append(int(value))
    return tuple(out)


def _check_sizes(where: str, sizes: Any) -> None:
    """Sizes are whole numbers per symbol: a float or a string would be read as a size silently (``"2"`` too)."""
    if not isinstance(sizes, Mapping):
        raise TypeError(
            f"{where}: sizes must be a dict of symbol -> int (e.g. dict(B=2, C=8)), got {type(sizes).__name__}"
        )
    for key, value in sizes.items():
        if not isinstance(key, str):
            raise TypeError(f"{where}: size symbols must be str, got {key!r}")
        if not is_int(value) or value < 0:
            raise (ValueError if is_int(value) else TypeError)(
                f"{where}: the size of {key!r} must be an int >= 0, got {value!r} ({type(value).__name__})"
            )


def _scaled(symbol: str, num: int = 1, den: int = 1) -> str:
    """``num/den`` times a size symbol, written as a reader would: 2C, C/4, H/2 — or a number if it is one."""
    if symbol.isdigit():
        value = Fraction(int(symbol) * num, den)
        return (
            str(value.numerator)
            if value.denominator == 1
            else f"{int(symbol) * num}/{den}"
        )
    core = symbol if re.fullmatch(r"[A-Za-z]\w*′?", symbol) else f"({symbol})"
    text = f"{num}{core}" if num != 1 else core
    return f"{text}/{den}" if den != 1 else text


def shapes_from(
    model: nn.Module, *inputs: Any, **kwargs: Any
) -> dict[str, tuple[int, ...]]:
    """Run ``model(*inputs, **kwargs)`` once under ``torch.no_grad`` and return each sub-module's output shape.

    Keys are the names of :meth:`torch.nn.Module.named_modules` (``""`` is the model itself); a module called
    more than once reports its first call. This is how a diagram is labelled with — or checked against — the
    real sizes.
    """
    check_module("shapes_from", "model", model)
    if not inputs and not kwargs:
        raise TypeError(
            "shapes_from: pass the inputs to run the model on, e.g. shapes_from(block, torch.randn(2, 8, 16, 16))"
        )
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(tensor, torch.Tensor) and name not in shapes:
                shapes[name] = tuple(tensor.shape)

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()]
    try:
        with torch.no_grad():
            model(*inputs, **kwargs)
    except RuntimeError as err:  # torch's shape/dtype errors; nlbook's own checks raise TypeError/ValueError
        shapes_in = [tuple(t.shape) for t in inputs if isinstance(t, torch.Tensor)]
        raise ValueError(
            f"shapes_from: {type(model).__name__} fails on inputs of shapes {shapes_in} "
            f"({type(err).__name__}: {err})"
        ) from err
    finally:
        for h in handles:
            h.remove()
    return shapes


# --------------------------------------------------------------------------------------------------------------
# The declarative drawer
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One operation (a box), an input/output name, a ⊕/⊗ (``op``) or a branch point (``junction``).

    ``x``, ``y`` are in grid units (columns of :data:`COL`, rows of :data:`ROW` inches, rows grow downwards).
    ``module`` names the production sub-module (or parameter) the box stands for, relative to the block;
    ``params`` names further parameters it draws (e.g. two offset tables shown as one box).
    """

    key: str
    label: str
    kind: Kind
    x: float
    y: float
    module: str | None = None
    params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_str("Node", "key", self.key)
        check_str(f"Node {self.key!r}", "label", self.label, empty=True)
        for name in (
            "x",
            "y",
        ):  # grid positions: a string or NaN would fail (or vanish) only when drawn
            value = getattr(self, name)
            if not is_real(value) or not math.isfinite(value):
                raise TypeError(
                    f"Node {self.key!r}: {name} must be a finite number (grid units), got {value!r}"
                )
        check_str(
            f"Node {self.key!r}", "module", self.module, optional=True, empty=True
        )
        if not isinstance(self.params, tuple) or not all(
            isinstance(p, str) for p in self.params
        ):
            raise TypeError(
                f"Node {self.key!r}: params must be a tuple of parameter names (str), got {self.params!r}"
            )
        # a misspelt kind would surface only when drawn, as a KeyError in KIND_STYLE
        if not isinstance(self.kind, str) or self.kind not in KIND_STYLE:
            raise ValueError(
                f"Node {self.key!r}: kind must be one of {sorted(KIND_STYLE)}, got {self.kind!r}"
            )


@dataclass(frozen=True)
class Edge:
    """An arrow ``src → dst`` through optional ``via`` points (grid units), labelled ``name: shape``.

    ``side`` puts the label left or right of a vertical segment; ``seg`` picks the segment (default: longest).
    ``src_dx``/``dst_dx`` shift where the arrow leaves/enters a box horizontally, in inches (parallel arrows).
    """

    src: str
    dst: str
    shape: str | None = None
    name: str | None = None
    via: tuple[tuple[float, float], ...] = ()
    side: Literal["left", "right"] = "right"
    seg: int | None = None
    src_dx: float = 0.0
    dst_dx: float = 0.0
    dashed: bool = False

    def __post_init__(self) -> None:
        check_str("Edge", "src", self.src)
        check_str("Edge", "dst", self.dst)
        where = f"Edge {self.src!r}->{self.dst!r}"
        check_str(where, "shape", self.shape, optional=True)
        check_str(where, "name", self.name, optional=True)
        if not isinstance(self.via, tuple | list) or not all(
            isinstance(p, tuple | list)
            and len(p) == 2
            and all(is_real(v) and math.isfinite(v) for v in p)
            for p in self.via
        ):
            raise TypeError(
                f"{where}: via must be a tuple of (x, y) points in grid units, e.g. ((1, 0.5),), got {self.via!r}"
            )
        if self.seg is not None and not is_int(self.seg):
            raise TypeError(
                f"{where}: seg must be an int (a segment index) or None, got {self.seg!r}"
            )
        for name in ("src_dx", "dst_dx"):
            value = getattr(self, name)
            if not is_real(value) or not math.isfinite(value):
                raise TypeError(
                    f"{where}: {name} must be a finite number (inches), got {value!r}"
                )
        check_bool(where, "dashed", self.dashed)
        if self.side not in ("left", "right"):
            raise ValueError(
                f"Edge {self.src!r}->{self.dst!r}: side must be 'left' or 'right', got {self.side!r}"
            )

    @property
    def text(self) -> str | None:
        if self.name and self.shape:
            return f"{self.name}: {self.shape}"
        return self.name or self.shape


@dataclass
class Diagram:
    """A block's data flow: add nodes with :meth:`box`, :meth:`op`, :meth:`io`, :meth:`dot`; join with :meth:`edge`."""

    title: str | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    groups: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    definitions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.title is not None and not isinstance(self.title, str):
            raise TypeError(
                f"Diagram: title must be a str or None, got {self.title!r} ({type(self.title).__name__})"
            )
        # the containers are filled by box/edge/group; a wrong one given here would fail only when drawn
        if not isinstance(self.nodes, dict) or not all(
            isinstance(n, Node) for n in self.nodes.values()
        ):
            raise TypeError(
                f"Diagram: nodes must be a dict key -> Node, got {self.nodes!r}"
            )
        if not isinstance(self.edges, list) or not all(
            isinstance(e, Edge) for e in self.edges
        ):
            raise TypeError(
                f"Diagram: edges must be a list of Edge, got {self.edges!r}"
            )
        if not isinstance(self.groups, list) or not all(
            isinstance(g, tuple) and len(g) == 2 for g in self.groups
        ):
            raise TypeError(
                f"Diagram: groups must be a list of (keys, label) pairs, got {self.groups!r}"
            )
        if not isinstance(self.definitions, dict) or not all(
            isinstance(k, str) and isinstance(v, str)
            for k, v in self.definitions.items()
        ):
            raise TypeError(
                f"Diagram: definitions must be a dict symbol -> shape expression (str), got {self.definitions!r}"
            )

    # -- building ------------------------------------------------------------------------------------------
    def _add(self, node: Node) -> str:
        if node.key in self.nodes:
            raise ValueError(f"Diagram: node key {node.key!r} used twice")
        self.nodes[node.key] = node
        return node.key

    def box(
        self,
        key: str,
        label: str,
        kind: Kind,
        at: tuple[float, float],
        module: str | None = None,
        params: tuple[str, ...] = (),
    ) -> str:
        return self._add(
            Node(
                key, label, kind, *_at("Diagram.box", at), module=module, params=params
            )
        )

    def io(
        self, key: str, label: str, at: tuple[float, float], module: str | None = None
    ) -> str:
        return self._add(
            Node(key, label, "input", *_at("Diagram.io", at), module=module)
        )

    def op(self, key: str, symbol: Literal["+", "×"], at: tuple[float, float]) -> str:
        if symbol not in ("+", "×"):
            raise ValueError(f"Diagram.op: symbol must be '+' or '×', got {symbol!r}")
        return self._add(Node(key, symbol, "op", *_at("Diagram.op", at)))

    def dot(self, key: str, at: tuple[float, float]) -> str:
        return self._add(Node(key, "", "junction", *_at("Diagram.dot", at)))

    def edge(
        self, src: str, dst: str, shape: str | None = None, **options: Any
    ) -> None:
        for k in (src, dst):
            if not isinstance(k, str) or k not in self.nodes:
                raise ValueError(f"Diagram.edge: unknown node {k!r}")
        unknown = sorted(
            set(options) - set(Edge.__dataclass_fields__) - {"src", "dst", "shape"}
        )
        if unknown:
            raise TypeError(
                f"Diagram.edge: unknown option(s) {unknown}; options are "
                f"{sorted(set(Edge.__dataclass_fields__) - {'src', 'dst', 'shape'})}"
            )
        self.edges.append(Edge(src, dst, shape, **options))

    def chain(self, keys: str, shapes: Mapping[str, str] | None = None) -> None:
        """Straight arrows through the space-separated ``keys``; ``shapes[k]`` labels the arrow leaving ``k``."""
        check_str("Diagram.chain", "keys (space-separated node keys)", keys)
        if shapes is not None and not isinstance(shapes, Mapping):
            raise TypeError(
                f"Diagram.chain: shapes must be a dict node key -> shape, got {shapes!r}"
            )
        names = keys.split()
        for a, b in zip(names, names[1:], strict=False):
            self.edge(a, b, (shapes or {}).get(a))

    def group(self, keys: Sequence[str], label: str) -> None:
        """A dashed frame around ``keys`` (e.g. the MLP of a Transformer block), labelled at its top right."""
        if isinstance(keys, str) or not isinstance(keys, Sequence) or not keys:
            raise TypeError(
                f"Diagram.group: keys must be a non-empty list of node keys, got {keys!r}"
            )
        unknown = [k for k in keys if k not in self.nodes]
        if unknown:
            raise ValueError(f"Diagram.group: unknown node(s) {unknown}")
        check_str("Diagram.group", "label", label, empty=True)
        self.groups.append((tuple(keys), label))

    # -- shapes --------------------------------------------------------------------------------------------
    def tensor_shapes(self) -> dict[str, str]:
        """The symbolic shape leaving each node: its first labelled outgoing arrow, else what came in."""
        out_label = {}
        first_in: dict[str, str] = {}
        for e in self.edges:
            if e.shape is not None and e.src not in out_label:
                out_label[e.src] = e.shape
            first_in.setdefault(e.dst, e.src)

        def shape_of(key: str, seen: frozenset[str]) -> str | None:
            if key in out_label:
                return out_label[key]
            if key in seen or key not in first_in:
                return None
            return shape_of(first_in[key], seen | {key})

        return {k: s for k in self.nodes if (s := shape_of(k, frozenset())) is not None}

    def check(self, shapes: Mapping[str, tuple[int, ...]], **sizes: int) -> list[str]:
        """Mismatches between the boxes that name a module and ``shapes`` (from :func:`shapes_from`).

        Returns readable lines, empty when every named module's output has the diagram's shape at ``sizes``.
        """
        if not isinstance(shapes, Mapping):
            raise TypeError(
                f"Diagram.check: shapes must be the dict module name -> shape from shapes_from, got "
                f"{type(shapes).__name__}"
            )
        _check_sizes("Diagram.check", sizes)
        problems = []
        symbolic = self.tensor_shapes()
        for node in self.nodes.values():
            if node.module is None or node.module not in shapes:
                continue
            if node.key not in symbolic:
                problems.append(
                    f"{node.key} ({node.module}): the diagram gives it no shape"
                )
                continue
            expected = eval_shape(symbolic[node.key], sizes, self.definitions)
            if expected != shapes[node.module]:
                problems.append(
                    f"{node.key} ({node.module}): diagram {symbolic[node.key]} = {expected}, "
                    f"module gives {shapes[node.module]}"
                )
        return problems

    @property
    def modules(self) -> set[str]:
        """Every sub-module and parameter name the boxes stand for."""
        return {n.module for n in self.nodes.values() if n.module is not None} | {
            p for n in self.nodes.values() for p in n.params
        }

    # -- layout --------------------------------------------------------------------------------------------
    def _size(self, node: Node) -> tuple[float, float]:
        """Half-width and half-height of a node in inches (a box grows to fit its label)."""
        if node.kind == "op":
            return OP_RADIUS, OP_RADIUS
        if node.kind == "junction":
            return DOT_RADIUS, DOT_RADIUS
        w, h = _text_size(node.label, FONT, bold=node.kind == "input")
        if node.kind == "input":
            return w / 2 + 0.04, h / 2 + 0.03
        return max(BOX_WIDTH, w + 2 * PAD) / 2, max(BOX_HEIGHT, h + 0.1) / 2

    def _centre(self, key: str) -> tuple[float, float]:
        n = self.nodes[key]
        return n.x * COL, n.y * ROW

    def _anchor(
        self, key: str, towards: tuple[float, float], dx: float
    ) -> tuple[float, float]:
        """Where a line from ``key``'s centre (shifted by ``dx``) towards a point crosses the node's outline."""
        node = self.nodes[key]
        cx, cy = self._centre(key)
        px, py = cx + dx, cy
        ux, uy = towards[0] - px, towards[1] - py
        norm = (ux**2 + uy**2) ** 0.5
        if norm == 0:
            return px, py
        if node.kind in ("op", "junction"):
            r = self._size(node)[0]
            return cx + r * ux / norm, cy + r * uy / norm
        a, b = self._size(node)
        ts = []
        if ux:
            ts.append(((cx + (a if ux > 0 else -a)) - px) / ux)
        if uy:
            ts.append(((cy + (b if uy > 0 else -b)) - py) / uy)
        t = min(ts)
        return px + t * ux, py + t * uy

    def _path(self, e: Edge) -> list[tuple[float, float]]:
        via = [(x * COL, y * ROW) for x, y in e.via]
        sx, sy = self._centre(e.src)
        tx, ty = self._centre(e.dst)
        first = via[0] if via else (tx + e.dst_dx, ty)
        last = via[-1] if via else (sx + e.src_dx, sy)
        return [
            self._anchor(e.src, first, e.src_dx),
            *via,
            self._anchor(e.dst, last, e.dst_dx),
        ]

    # -- drawing -------------------------------------------------------------------------------------------
    def draw(self, ax: plt.Axes | None = None) -> Figure:
        """Draw into ``ax`` (a new figure sized to the diagram when ``None``) and return the figure.

        Coordinates are inches, so a new figure shows labels at their point size and boxes at their size; a
        caller's ``ax`` gets the same drawing scaled to fit it.
        """
        if ax is not None and not isinstance(ax, plt.Axes):
            raise TypeError(
                f"draw: ax must be a matplotlib Axes or None (a new figure), got {type(ax).__name__}"
            )
        if not self.nodes:
            raise ValueError(
                "Diagram.draw: the diagram has no nodes to draw; add some with box, io, op or dot"
            )
        extents: list[
            tuple[float, float, float, float]
        ] = []  # x0, y0, x1, y1 in inches
        for node in self.nodes.values():
            cx, cy = self._centre(node.key)
            a, b = self._size(node)
            extents.append((cx - a, cy - b, cx + a, cy + b))
        paths = {id(e): self._path(e) for e in self.edges}
        labels = []
        for e in self.edges:
            if e.text:
                labels.append((e, *self._label_position(e, paths[id(e)])))
        for e, x, y, ha, va in labels:
            w, h = _text_size(e.text or "", SMALL)
            x0 = x - w if ha == "right" else x - w / 2 if ha == "center" else x
            y0 = y - h if va == "bottom" else y - h / 2
            extents.append((x0, y0, x0 + w, y0 + h))
        frames = []
        for keys, text in self.groups:
            boxes = [e for k, e in zip(self.nodes, extents, strict=False) if k in keys]
            fx0, fy0 = min(b[0] for b in boxes) - 0.08, min(b[1] for b in boxes) - 0.08
            fx1, fy1 = max(b[2] for b in boxes) + 0.08, max(b[3] for b in boxes) + 0.08
            frames.append((fx0, fy0, fx1, fy1, text))
            tw, th = _text_size(text, SMALL)
            extents.append((fx0, fy0, fx1, fy1))
            extents.append((fx1 + 0.05, fy0, fx1 + 0.05 + tw, fy0 + th))
        for path in paths.values():
            xs, ys = zip(*path, strict=True)
            extents.append((min(xs), min(ys), max(xs), max(ys)))
        x0, y0 = min(e[0] for e in extents), min(e[1] for e in extents)
        x1, y1 = max(e[2] for e in extents), max(e[3] for e in extents)
        top = y0
        if self.title:
            _, th = _text_size(self.title, TITLE, bold=True)
            top = y0 - th - 0.12
            x1 = max(x1, x0 + _text_size(self.title, TITLE, bold=True)[0])
        bottom = y1
        footnote = "     ".join(f"{k} = {v}" for k, v in self.definitions.items())
        if footnote:
            bottom = y1 + 0.1 + _text_size(footnote, SMALL)[1]
            x1 = max(x1, x0 + _text_size(footnote, SMALL)[0])
        margin = 0.12
        width, height = x1 - x0 + 2 * margin, bottom - top + 2 * margin

        if ax is None:
            fig = plt.figure(figsize=(width, height))
            ax = fig.add_axes((0, 0, 1, 1))
        else:
            fig = ax.figure  # type: ignore[assignment]
        ax.set_xlim(x0 - margin, x1 + margin)
        ax.set_ylim(bottom + margin, top - margin)  # rows grow downwards
        ax.set_aspect("equal")
        ax.set_axis_off()

        if self.title:
            ax.text(
                x0,
                top,
                self.title,
                fontsize=TITLE,
                fontweight="bold",
                ha="left",
                va="top",
                gid="title",
            )
        if footnote:
            ax.text(
                x0,
                bottom,
                footnote,
                fontsize=SMALL,
                style="italic",
                ha="left",
                va="bottom",
                gid="footnote",
            )
        for fx0, fy0, fx1, fy1, text in frames:
            frame = FancyBboxPatch(
                (fx0, fy0),
                fx1 - fx0,
                fy1 - fy0,
                boxstyle="round,pad=0,rounding_size=0.06",
                fc="none",
                ec="#9a9a9a",
                ls=(0, (3, 2)),
                lw=0.8,
                gid=f"group:{text}",
            )
            ax.add_patch(frame)
            ax.text(
                fx1 + 0.05,
                fy0,
                text,
                fontsize=SMALL,
                style="italic",
                color="#555555",
                ha="left",
                va="top",
            )
        for e in self.edges:
            self._draw_edge(ax, e, paths[id(e)])
        for e, x, y, ha, va in labels:
            ax.text(
                x,
                y,
                e.text,
                fontsize=SMALL,
                color=SHAPE_COLOUR,
                ha=ha,
                va=va,
                zorder=4,
                gid=f"shape:{e.src}->{e.dst}",
                bbox=dict(boxstyle="square,pad=0.08", fc="white", ec="none", alpha=0.9),
            )
        for node in self.nodes.values():
            self._draw_node(ax, node)
        return fig

    def _label_position(
        self, e: Edge, path: list[tuple[float, float]]
    ) -> tuple[float, float, str, str]:
        segs = list(zip(path, path[1:], strict=False))
        i = (
            e.seg
            if e.seg is not None
            else max(range(len(segs)), key=lambda j: _length(*segs[j]))
        )
        (ax_, ay), (bx, by) = segs[i]
        mx, my = (ax_ + bx) / 2, (ay + by) / 2
        if abs(bx - ax_) > abs(by - ay):  # horizontal: label above the line
            return mx, my - 0.04, "center", "bottom"
        if e.side == "left":
            return mx - 0.07, my, "right", "center"
        return mx + 0.07, my, "left", "center"

    def _draw_edge(
        self, ax: plt.Axes, e: Edge, path: list[tuple[float, float]]
    ) -> None:
        style = (0, (3, 2)) if e.dashed else "-"
        if len(path) > 2:
            xs, ys = zip(*path[:-1], strict=True)
            ax.plot(
                xs, ys, color=LINE, lw=1.0, ls=style, solid_joinstyle="miter", zorder=1
            )
        ax.annotate(
            "",
            xy=path[-1],
            xytext=path[-2],
            arrowprops=dict(
                arrowstyle="-|>",
                color=LINE,
                lw=1.0,
                ls=style,
                shrinkA=0,
                shrinkB=0,
                mutation_scale=9,
            ),
            zorder=2,
            gid=f"edge:{e.src}->{e.dst}",
        )

    def _draw_node(self, ax: plt.Axes, node: Node) -> None:
        cx, cy = self._centre(node.key)
        face, edge = KIND_STYLE[node.kind]
        gid = f"node:{node.key}"
        if node.kind in ("op", "junction"):
            r = self._size(node)[0]
            ax.add_patch(
                Circle((cx, cy), r, fc=face, ec=edge, lw=1.0, zorder=3, gid=gid)
            )
            if node.kind == "op":
                ax.text(
                    cx,
                    cy,
                    node.label,
                    ha="center",
                    va="center_baseline",
                    fontsize=FONT + 1.5,
                    zorder=4,
                )
            return
        a, b = self._size(node)
        if node.kind != "input":
            ax.add_patch(
                FancyBboxPatch(
                    (cx - a, cy - b),
                    2 * a,
                    2 * b,
                    boxstyle="round,pad=0,rounding_size=0.05",
                    fc=face,
                    ec=edge,
                    lw=1.0,
                    zorder=3,
                    gid=gid,
                )
            )
        ax.text(
            cx,
            cy,
            node.label,
            ha="center",
            va="center",
            fontsize=FONT,
            fontweight="bold" if node.kind == "input" else "normal",
            zorder=4,
            gid=f"label:{node.key}",
            linespacing=1.15,
        )


def _length(a: tuple[float, float], b: tuple[float, float]) -> float:
    return ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5


@lru_cache(maxsize=1024)
def _text_size(text: str, size: float, bold: bool = False) -> tuple[float, float]:
    """Width and height in inches of ``text`` at ``size`` points in the default font (lines at 1.15 spacing)."""
    prop = FontProperties(size=size, weight="bold" if bold else "normal")
    lines = text.split("\n")
    width = max(
        TextPath((0, 0), line or " ", prop=prop).get_extents().width for line in lines
    )
    return width / 72, size * (1 + 1.15 * (len(lines) - 1)) * 1.25 / 72


def _at(where: str, at: Any) -> tuple[Any, Any]:
    """A node's ``at``: an (x, y) pair in grid units (checked further by :class:`Node`)."""
    if not isinstance(at, tuple | list) or len(at) != 2:
        raise TypeError(f"{where}: at must be an (x, y) pair in grid units, got {at!r}")
    return at[0], at[1]


def _check_flags(where: str, **flags: Any) -> None:
    """Options that switch a part of a diagram on: ``"no"`` would be truthy and draw it."""
    for name, value in flags.items():
        check_bool(where, name, value)


def _draw(
    where: str, build: Callable[..., Diagram], ax: Any, options: dict[str, Any]
) -> Figure:
    """``build(**options).draw(ax)`` for a ``draw_*`` function, with its own name in every error: ``ax`` a
    matplotlib Axes or None, and only the options its diagram function takes."""
    if ax is not None and not isinstance(ax, plt.Axes):
        raise TypeError(
            f"{where}: ax must be a matplotlib Axes or None (a new figure), got {type(ax).__name__}; "
            "pass the diagram's options by keyword"
        )
    known = list(inspect.signature(build).parameters)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(
            f"{where}: unknown option(s) {unknown}; {build.__name__} takes {', '.join(known)}"
        )
    return build(**options).draw(ax)


def draw_legend(ax: plt.Axes | None = None) -> Figure:
    """The colour of each kind of operation, as used by every diagram of the book."""
    if ax is not None and not isinstance(ax, plt.Axes):
        raise TypeError(
            f"draw_legend: ax must be a matplotlib Axes or None (a new figure), got {type(ax).__name__}"
        )
    d = Diagram()
    names = {
        "conv": "convolution",
        "linear": "linear",
        "attention": "attention and gates",
    }
    for i, kind in enumerate(_LEGEND_KINDS):
        d.box(kind, names.get(kind, kind), kind, at=(i % 4, (i // 4) * 0.7))
    return d.draw(ax)


# --------------------------------------------------------------------------------------------------------------
# Helpers shared by the diagrams
# --------------------------------------------------------------------------------------------------------------


def _shape(*dims: str) -> str:
    return "×".join(dims)


def _check_symbols(where: str, **symbols: Any) -> None:
    """Shape labels are text: ``channels="C"`` or ``"64"``; an int would fail deep inside as an AttributeError."""
    for name, value in symbols.items():
        if not isinstance(value, str) or not value:
            raise TypeError(
                f"{where}: {name} must be a size symbol as a string, like 'C' or '64', got {value!r}"
            )
        # the symbol becomes part of every shape label, which Diagram.check evaluates: it must parse there
        for dim in value.split("×"):
            try:
                ast.parse(_to_python(dim.strip()), mode="eval")
            except SyntaxError:
                raise ValueError(
                    f"{where}: {name} {value!r} is not a size expression; use a symbol, a number or an "
                    "expression of them like 'C', '64', '2C' or 'H/2'"
                ) from None


def _skip(d: Diagram, src: str, dst: str, side: float, **options: Any) -> None:
    """A residual path: sideways out of ``src`` to column ``side``, down, and into ``dst`` from the side."""
    s, t = d.nodes[src], d.nodes[dst]
    d.edge(src, dst, via=((side, s.y), (side, t.y)), **options)


# --------------------------------------------------------------------------------------------------------------
# Chapter 1
# --------------------------------------------------------------------------------------------------------------


def basic_block_diagram(
    *,
    downsample: bool = False,
    channels: str = "C",
    size: tuple[str, str] = ("H", "W"),
    title: str | None = None,
) -> Diagram:
    """ResNet's BasicBlock (He et al., 2016): two 3×3 convolutions and an identity (or 1×1 projection) shortcut.

    ``downsample=True`` draws the first block of a stage: stride 2, twice the channels, projection shortcut.
    """
    _check_flags("basic_block_diagram", downsample=downsample)
    if not isinstance(size, tuple | list) or len(size) != 2:
        raise TypeError(
            f"basic_block_diagram: size must be a pair of size symbols like ('H', 'W'), got {size!r}"
        )
    _check_symbols(
        "basic_block_diagram", channels=channels, height=size[0], width=size[1]
    )
    c, (h, w) = channels, size
    c_out = _scaled(c, 2) if downsample else c
    h_out, w_out = (_scaled(h, 1, 2), _scaled(w, 1, 2)) if downsample else (h, w)
    d = Diagram(
        title
        if title is not None
        else "ResNet basic block" + (" (downsampling)" if downsample else "")
    )
    d.io("x", "x", (0, 0))
    d.dot("j", (0, 0.75))
    stride = ", stride 2" if downsample else ""
    d.box("conv1", f"3×3 conv{stride}", "conv", (0, 1.5), module="conv1")
    d.box("bn1", "BatchNorm", "norm", (0, 2.5), module="bn1")
    d.box("relu1", "ReLU", "activation", (0, 3.5))
    d.box("conv2", "3×3 conv", "conv", (0, 4.5), module="conv2")
    d.box("bn2", "BatchNorm", "norm", (0, 5.5), module="bn2")
    d.op("add", "+", (0, 6.5))
    d.box("relu2", "ReLU", "activation", (0, 7.5))
    d.io("out", "out", (0, 8.5), module="")
    d.edge("x", "j", _shape("B", c, h, w))
    d.edge("j", "conv1")
    d.chain(
        "conv1 bn1 relu1 conv2 bn2 add relu2 out",
        shapes={"conv1": _shape("B", c_out, h_out, w_out)},
    )
    if downsample:
        d.box("sc_conv", "1×1 conv, stride 2", "conv", (1.1, 3), module="shortcut.0")
        d.box("sc_bn", "BatchNorm", "norm", (1.1, 4), module="shortcut.1")
        d.edge("j", "sc_conv", via=((1.1, 0.75),))
        d.edge("sc_conv", "sc_bn", _shape("B", c_out, h_out, w_out))
        d.edge("sc_bn", "add", via=((1.1, 6.5),))
    else:
        _skip(d, "j", "add", 1.0, name="identity")
    return d


# --------------------------------------------------------------------------------------------------------------
# Chapter 2
# --------------------------------------------------------------------------------------------------------------


def attention_diagram(
    *,
    lead: str = "B×h",
    queries: str = "N",
    keys: str = "M",
    dim: str = "d",
    bias: bool = False,
    title: str | None = None,
) -> Diagram:
    """Scaled dot-product attention, softmax(QKᵀ/√d + bias) V, after Vaswani et al. (2017, Fig. 2).

    ``lead`` are the leading (batch, head) dimensions; ``bias=True`` adds the additive logits (relative positions).
    """
    _check_flags("attention_diagram", bias=bias)
    _check_symbols("attention_diagram", lead=lead, queries=queries, keys=keys, dim=dim)
    d = Diagram(title if title is not None else "Scaled dot-product attention")
    d.io("q", "Q", (0, 0))
    d.io("k", "K", (1, 0))
    d.io("v", "V", (2, 0))
    d.box("qk", "MatMul  Q·Kᵀ", "attention", (0, 1.4))
    d.box("scale", "scale by 1/√d", "attention", (0, 2.4))
    row = 3.4
    if bias:
        d.op("bias_add", "+", (0, row))
        d.io("bias", "bias", (1, row))
        d.edge("bias", "bias_add", _shape(lead, queries, keys), seg=0)
        row += 1
    d.box("softmax", f"softmax over {keys}", "attention", (0, row), module="weights")
    d.box("av", "MatMul  weights·V", "attention", (0, row + 1.2))
    d.io("out", "out", (0, row + 2.4), module="out")
    d.edge("q", "qk", _shape(lead, queries, dim))
    d.edge("k", "qk", _shape(lead, keys, dim), via=((1, 1.4),), seg=0)
    d.edge("v", "av", _shape(lead, keys, dim), via=((2, row + 1.2),), seg=0)
    d.edge("qk", "scale", _shape(lead, queries, keys))
    if bias:
        d.chain("scale bias_add softmax")
    else:
        d.edge("scale", "softmax")
    d.edge("softmax", "av", _shape(lead, queries, keys))
    d.edge("av", "out", _shape(lead, queries, dim))
    return d


def multi_head_attention_diagram(
    *,
    form: Literal["tokens", "2d"] = "tokens",
    heads: str = "h",
    title: str | None = None,
) -> Diagram:
    """Multi-head self-attention: one projection to q, k, v, per-head attention, heads merged and projected.

    ``form="tokens"`` is the Transformer's layer on (B, N, D) tokens (:class:`~nlbook.attention.MultiHeadAttention`);
    ``form="2d"`` the same layer on a (B, C, H, W) map with 1×1 convolutions
    (:class:`~nlbook.attention.MultiHeadSelfAttention2d`), every pixel a token.
    """
    _check_symbols("multi_head_attention_diagram", heads=heads)
    if form not in ("tokens", "2d"):
        raise ValueError(
            f"multi_head_attention_diagram: form must be 'tokens' or '2d', got {form!r}"
        )
    h = heads
    name = "Multi-head attention" + (" on a feature map" if form == "2d" else "")
    d = Diagram(title if title is not None else name)
    if form == "tokens":
        x_shape, qkv_shape, n, proj, merge = (
            "B×N×D",
            "B×N×3D",
            "N",
            "Linear",
            "merge heads",
        )
        d.definitions["d"] = f"D/{h}"
    else:
        x_shape, qkv_shape, n, proj, merge = (
            "B×C×H×W",
            "B×3C×H×W",
            "N",
            "1×1 conv",
            "merge heads, unflatten",
        )
        d.definitions.update({"N": "H·W", "d": f"C/{h}"})
    d.io("x", "x", (0, 0))
    d.box(
        "qkv",
        f"{proj} → q, k, v",
        "linear" if form == "tokens" else "conv",
        (0, 1),
        module="qkv",
    )
    split = "split heads" if form == "tokens" else "flatten, split heads"
    d.box("split", split, "reshape", (0, 2))
    d.box(
        "attn",
        f"scaled dot-product attention\n({h} heads in parallel)",
        "attention",
        (0, 3.3),
    )
    d.box("merge", merge, "reshape", (0, 4.6))
    d.box(
        "proj",
        f"{proj} (output)",
        "linear" if form == "tokens" else "conv",
        (0, 5.6),
        module="proj",
    )
    d.io("out", "out", (0, 6.6), module="")
    d.edge("x", "qkv", x_shape)
    d.edge("qkv", "split", qkv_shape)
    for i, part in enumerate("qkv"):
        dx = (i - 1) * 0.4
        shape = _shape("B", h, n, "d") if part == "v" else None
        d.edge(
            "split",
            "attn",
            shape,
            name="q, k, v" if shape else None,
            src_dx=dx,
            dst_dx=dx,
        )
    d.edge("attn", "merge", _shape("B", h, n, "d"))
    d.edge("merge", "proj", x_shape)
    d.edge("proj", "out", x_shape)
    return d


# --------------------------------------------------------------------------------------------------------------
# Chapter 3
# --------------------------------------------------------------------------------------------------------------


def nonlocal_block_diagram(
    *, sub_sample: bool = False, title: str | None = None
) -> Diagram:
    """The non-local block (Wang et al., 2018, Fig. 2), embedded-Gaussian form: z = BN(W y) + x.

    ``sub_sample=True`` adds the paper's 2×2 max-pool on φ and g (M = N/4 keys).
    """
    _check_flags("nonlocal_block_diagram", sub_sample=sub_sample)
    d = Diagram(title if title is not None else "Non-local block (embedded Gaussian)")
    d.definitions["N"] = "H·W"
    d.definitions["M"] = "H·W/4" if sub_sample else "H·W"
    d.io("x", "x", (1, 0))
    d.dot("j", (1, 0.7))
    for col, (key, greek) in enumerate((("theta", "θ"), ("phi", "φ"), ("g", "g"))):
        d.box(key, f"{greek}: 1×1 conv", "conv", (col, 1.6), module=key)
    d.edge("x", "j", "B×C×H×W")
    d.edge("j", "theta", via=((0, 0.7),))
    d.edge("j", "phi")
    d.edge("j", "g", via=((2, 0.7),))
    row = 2.8
    if sub_sample:
        for key in ("phi", "g"):
            d.box(
                f"pool_{key}",
                "2×2 max-pool",
                "pooling",
                (1 if key == "phi" else 2, row),
                module="pool",
            )
        row += 1.1
    for col, key in enumerate(("theta", "phi", "g")):
        d.box(f"flat_{key}", "flatten", "reshape", (col, row))
        src = f"pool_{key}" if sub_sample and key != "theta" else key
        if src != key:
            d.edge(key, src, "B×C′×H×W")
            d.edge(src, f"flat_{key}", "B×C′×H/2×W/2")
        else:
            d.edge(key, f"flat_{key}", "B×C′×H×W")
    d.box("logits", "MatMul  θ·φᵀ", "attention", (0, row + 1.3))
    d.box("softmax", "softmax over M", "attention", (0, row + 2.4))
    d.box("mix", "MatMul  weights·g", "attention", (1, row + 3.5))
    d.box("unflat", "unflatten", "reshape", (1, row + 4.6))
    d.box("W", "W: 1×1 conv", "conv", (1, row + 5.6), module="W")
    d.box("bn", "BatchNorm (γ = 0 at init)", "norm", (1, row + 6.6), module="bn")
    d.op("add", "+", (1, row + 7.6))
    d.io("out", "z", (1, row + 8.6), module="")
    d.edge("flat_theta", "logits", "B×N×C′")
    d.edge("flat_phi", "logits", "B×M×C′", via=((1, row + 1.3),), seg=0)
    d.edge("logits", "softmax", "B×N×M")
    d.edge("softmax", "mix", via=((0, row + 3.5),))
    d.edge("flat_g", "mix", "B×M×C′", via=((2, row + 3.5),), seg=0)
    d.edge("mix", "unflat", "B×N×C′")
    d.edge("unflat", "W", "B×C′×H×W")
    d.edge("W", "bn", "B×C×H×W")
    d.edge("bn", "add")
    d.edge("add", "out", "B×C×H×W")
    _skip(d, "j", "add", 2.75, name="x")
    d.definitions["C′"] = "C/2"
    return d


# --------------------------------------------------------------------------------------------------------------
# Chapter 4
# --------------------------------------------------------------------------------------------------------------


def patch_embedding_diagram(*, title: str | None = None) -> Diagram:
    """Patch embedding: a p×p convolution with stride p is one linear layer applied to every patch."""
    d = Diagram(title if title is not None else "Patch embedding")
    d.definitions["N"] = "H·W/p²"
    d.io("x", "image", (0, 0))
    d.box(
        "proj",
        "p×p conv, stride p\n(one linear map per patch)",
        "conv",
        (0, 1.2),
        module="proj",
    )
    d.box("flat", "flatten the grid", "reshape", (0, 2.4))
    d.io("out", "tokens", (0, 3.4), module="")
    d.edge("x", "proj", "B×C×H×W")
    d.edge("proj", "flat", "B×D×H/p×W/p")
    d.edge("flat", "out", "B×N×D")
    return d


def encoder_block_diagram(*, heads: str = "h", title: str | None = None) -> Diagram:
    """The pre-norm Transformer encoder block of the ViT (Dosovitskiy et al., 2021, Fig. 1 right)."""
    _check_symbols("encoder_block_diagram", heads=heads)
    d = Diagram(title if title is not None else "Transformer encoder block (pre-norm)")
    d.io("x", "x", (0, 0))
    d.dot("j1", (0, 0.75))
    d.box("norm1", "LayerNorm", "norm", (0, 1.5), module="norm1")
    d.box(
        "attn",
        f"multi-head attention ({heads} heads)",
        "attention",
        (0, 2.5),
        module="attn",
    )
    d.op("add1", "+", (0, 3.5))
    d.dot("j2", (0, 4.25))
    d.box("norm2", "LayerNorm", "norm", (0, 5.0), module="norm2")
    d.box("fc1", "Linear", "linear", (0, 6.0), module="mlp.fc1")
    d.box("act", "GELU", "activation", (0, 7.0), module="mlp.act")
    d.box("fc2", "Linear", "linear", (0, 8.0), module="mlp.fc2")
    d.op("add2", "+", (0, 9.0))
    d.io("out", "out", (0, 10.0), module="")
    d.group(("fc1", "act", "fc2"), "MLP")
    d.edge("x", "j1", "B×N×D")
    d.chain(
        "j1 norm1 attn add1 j2 norm2 fc1 act fc2 add2 out",
        shapes={"attn": "B×N×D", "fc1": "B×N×4D", "fc2": "B×N×D", "add2": "B×N×D"},
    )
    _skip(d, "j1", "add1", 1.0)
    _skip(d, "j2", "add2", 1.0)
    return d


def vit_diagram(*, title: str | None = None) -> Diagram:
    """The Vision Transformer (Dosovitskiy et al., 2021, Fig. 1 left), class-token form."""
    d = Diagram(title if title is not None else "Vision Transformer (ViT)")
    d.definitions["N"] = "H·W/p²"
    d.io("x", "image", (0, 0))
    d.box("embed", "patch embedding", "embedding", (0, 1), module="patch_embed")
    d.box("cls", "prepend class token", "embedding", (0, 2), module="cls_token")
    d.op("add", "+", (0, 3))
    d.box("pos", "position embedding", "embedding", (1.3, 3), module="pos_embed")
    d.box("blocks", "encoder block × L", "attention", (0, 4), module="blocks.0")
    d.box("norm", "LayerNorm", "norm", (0, 5), module="norm")
    d.box("take", "take the class token", "reshape", (0, 6))
    d.box("head", "Linear head", "linear", (0, 7), module="head")
    d.io("out", "logits", (0, 8), module="")
    d.edge("x", "embed", "B×C×H×W")
    d.edge("embed", "cls", "B×N×D")
    d.edge("cls", "add", "B×(N+1)×D", side="left")
    d.edge("pos", "add", "1×(N+1)×D")
    d.chain(
        "add blocks norm take head out",
        shapes={"add": "B×(N+1)×D", "take": "B×D", "head": "B×K"},
    )
    return d


# --------------------------------------------------------------------------------------------------------------
# Chapter 5
# --------------------------------------------------------------------------------------------------------------


def se_diagram(*, title: str | None = None) -> Diagram:
    """Squeeze-and-excitation (Hu et al., 2018): a per-channel gate from globally pooled features."""
    d = Diagram(title if title is not None else "Squeeze-and-excitation")
    d.io("x", "x", (0, 0))
    d.dot("j", (0, 0.75))
    d.box("pool", "global average pool", "pooling", (0, 1.5))
    d.box("fc1", "Linear C → C/r", "linear", (0, 2.5), module="fc1")
    d.box("relu", "ReLU", "activation", (0, 3.5))
    d.box("fc2", "Linear C/r → C", "linear", (0, 4.5), module="fc2")
    d.box("sigmoid", "sigmoid", "activation", (0, 5.5))
    d.op("mul", "×", (0, 6.5))
    d.io("out", "out", (0, 7.5), module="")
    d.edge("x", "j", "B×C×H×W")
    d.chain(
        "j pool fc1 relu fc2 sigmoid mul out",
        shapes={
            "pool": "B×C",
            "fc1": "B×C/r",
            "fc2": "B×C",
            "sigmoid": "B×C×1×1",
            "mul": "B×C×H×W",
        },
    )
    _skip(d, "j", "mul", 1.0, name="x")
    return d


def cbam_diagram(*, spatial_norm: bool = False, title: str | None = None) -> Diagram:
    """CBAM (Woo et al., 2018): a channel gate from average- and max-pooled features, then a spatial gate."""
    _check_flags("cbam_diagram", spatial_norm=spatial_norm)
    d = Diagram(title if title is not None else "CBAM: channel gate, then spatial gate")
    d.io("x", "x", (0.5, 0))
    d.dot("j1", (0.5, 0.7))
    d.box("avg", "average pool over H, W", "pooling", (0, 1.5))
    d.box("max", "max pool over H, W", "pooling", (1, 1.5))
    d.box("mlp_a", "shared MLP", "linear", (0, 2.6), module="mlp")
    d.box("mlp_m", "shared MLP", "linear", (1, 2.6), module="mlp")
    d.op("add", "+", (0.5, 3.6))
    d.box("sig1", "sigmoid", "activation", (0.5, 4.5))
    d.op("mul1", "×", (0.5, 5.5))
    d.dot("j2", (0.5, 6.2))
    d.box("cmean", "mean over channels", "pooling", (0, 7.0))
    d.box("cmax", "max over channels", "pooling", (1, 7.0))
    d.box("cat", "concatenate", "reshape", (0.5, 8.1))
    d.box("conv", "7×7 conv, 2 → 1", "conv", (0.5, 9.1), module="spatial_conv")
    row = 10.1
    if spatial_norm:
        d.box("bn", "BatchNorm", "norm", (0.5, row), module="spatial_norm")
        row += 1
    d.box("sig2", "sigmoid", "activation", (0.5, row))
    d.op("mul2", "×", (0.5, row + 1))
    d.io("out", "out", (0.5, row + 2), module="")
    d.group(("avg", "max", "mlp_a", "mlp_m", "add", "sig1"), "channel\nattention")
    d.group(
        ("cmean", "cmax", "cat", "conv", "sig2", *(("bn",) if spatial_norm else ())),
        "spatial\nattention",
    )
    d.edge("x", "j1", "B×C×H×W")
    d.edge("j1", "avg", via=((0, 0.7),))
    d.edge("j1", "max", via=((1, 0.7),))
    d.edge("avg", "mlp_a", "B×C", side="left")
    d.edge("max", "mlp_m", "B×C")
    d.edge("mlp_a", "add", "B×C", via=((0, 3.6),), seg=0, side="left")
    d.edge("mlp_m", "add", via=((1, 3.6),))
    d.edge("add", "sig1")
    d.edge("sig1", "mul1", "B×C×1×1")
    _skip(d, "j1", "mul1", 1.85)
    d.edge("mul1", "j2", "B×C×H×W")
    d.edge("j2", "cmean", via=((0, 6.2),))
    d.edge("j2", "cmax", via=((1, 6.2),))
    d.edge("cmean", "cat", "B×1×H×W", via=((0, 8.1),), seg=0, side="left")
    d.edge("cmax", "cat", "B×1×H×W", via=((1, 8.1),), seg=0)
    d.edge("cat", "conv", "B×2×H×W")
    d.chain(
        "conv bn sig2 mul2 out" if spatial_norm else "conv sig2 mul2 out",
        shapes={"conv": "B×1×H×W", "mul2": "B×C×H×W"},
    )
    _skip(d, "j2", "mul2", 1.85)
    return d


def bot_block_diagram(
    *, downsample: bool = False, heads: str = "h", title: str | None = None
) -> Diagram:
    """BoTNet's bottleneck Transformer block (Srinivas et al., 2021): the bottleneck's 3×3 conv becomes MHSA.

    ``downsample=True`` draws a strided block (C → 2C channels): attention at the input size, then 2×2 pooling.
    """
    _check_flags("bot_block_diagram", downsample=downsample)
    _check_symbols("bot_block_diagram", heads=heads)
    d = Diagram(title if title is not None else "Bottleneck Transformer (BoT) block")
    c_out, hw_out = ("2C", "H/2×W/2") if downsample else ("C", "H×W")
    mid = "C/2" if downsample else "C/4"  # C_out / 4
    d.io("x", "x", (0, 0))
    d.dot("j", (0, 0.75))
    d.box("reduce", "1×1 conv + BN + ReLU", "conv", (0, 1.5), module="reduce")
    d.box(
        "mhsa",
        f"MHSA, {heads} heads,\nrelative position logits",
        "attention",
        (0, 2.7),
        module="mhsa",
    )
    row = 3.9
    if downsample:
        d.box("pool", "2×2 average pool", "pooling", (0, row), module="pool")
        row += 1
    d.box("post", "BN + ReLU", "norm", (0, row), module="post")
    d.box("expand", "1×1 conv + BN", "conv", (0, row + 1), module="expand")
    d.op("add", "+", (0, row + 2))
    d.box("relu", "ReLU", "activation", (0, row + 3))
    d.io("out", "out", (0, row + 4), module="")
    d.edge("x", "j", "B×C×H×W")
    d.edge("j", "reduce")
    d.edge("reduce", "mhsa", f"B×{mid}×H×W")
    if downsample:
        d.chain("mhsa pool post", shapes={"pool": f"B×{mid}×{hw_out}"})
    else:
        d.edge("mhsa", "post", f"B×{mid}×H×W")
    d.chain("post expand add relu out", shapes={"expand": f"B×{c_out}×{hw_out}"})
    if downsample:
        d.box("sc", "1×1 conv, stride 2\n+ BN", "conv", (1.1, 2.7), module="shortcut")
        d.edge("j", "sc", via=((1.1, 0.75),))
        d.edge("sc", "add", f"B×{c_out}×{hw_out}", via=((1.1, row + 2),), seg=0)
    else:
        _skip(d, "j", "add", 1.0, name="identity")
    return d


def mbconv_diagram(*, downsample: bool = False, title: str | None = None) -> Diagram:
    """CoAtNet's MBConv (Sandler et al., 2018; Dai et al., 2021): pre-norm inverted residual with SE.

    ``downsample=True`` draws a strided block (C → 2C channels): the depthwise conv strides, and the shortcut
    pools and projects.
    """
    _check_flags("mbconv_diagram", downsample=downsample)
    d = Diagram(title if title is not None else "MBConv (inverted residual with SE)")
    c_out = "2C" if downsample else "C"
    mid = "8C" if downsample else "4C"  # expand ratio 4 on the output width
    hw_out = "H/2×W/2" if downsample else "H×W"
    d.io("x", "x", (0, 0))
    d.dot("j", (0, 0.75))
    d.box("pre_norm", "BatchNorm", "norm", (0, 1.5), module="pre_norm")
    d.box(
        "expand", "1×1 conv + BN + GELU\n(expand 4×)", "conv", (0, 2.6), module="expand"
    )
    stride = ", stride 2" if downsample else ""
    d.box(
        "dw",
        f"3×3 depthwise conv{stride}\n+ BN + GELU",
        "conv",
        (0, 3.9),
        module="depthwise",
    )
    d.box("se", "squeeze-excitation", "attention", (0, 5.1), module="se")
    d.box("project", "1×1 conv (project)", "conv", (0, 6.1), module="project")
    d.op("add", "+", (0, 7.1))
    d.io("out", "out", (0, 8.1), module="")
    d.edge("x", "j", "B×C×H×W")
    d.chain(
        "j pre_norm expand dw se project add out",
        shapes={
            "expand": f"B×{mid}×H×W",
            "dw": f"B×{mid}×{hw_out}",
            "project": f"B×{c_out}×{hw_out}",
        },
    )
    if downsample:
        d.box("sc_pool", "2×2 average pool", "pooling", (1.1, 3), module="shortcut.0")
        d.box("sc_conv", "1×1 conv", "conv", (1.1, 4.3), module="shortcut.1")
        d.edge("j", "sc_pool", via=((1.1, 0.75),))
        d.edge("sc_pool", "sc_conv", "B×C×H/2×W/2")
        d.edge("sc_conv", "add", f"B×{c_out}×{hw_out}", via=((1.1, 7.1),), seg=0)
    else:
        _skip(d, "j", "add", 1.0, name="identity")
    return d


def transformer_block_2d_diagram(
    *, downsample: bool = False, heads: str = "h", title: str | None = None
) -> Diagram:
    """CoAtNet's Transformer block on a feature map: relative attention over the H·W tokens, then an MLP.

    ``downsample=True`` draws a strided block (C → 2C): pool 2×2 first, attend on the smaller grid.
    """
    _check_flags("transformer_block_2d_diagram", downsample=downsample)
    _check_symbols("transformer_block_2d_diagram", heads=heads)
    d = Diagram(title if title is not None else "CoAtNet Transformer block")
    c_out = "2C" if downsample else "C"
    hw_out = "H/2×W/2" if downsample else "H×W"
    d.definitions["N"] = "H·W/4" if downsample else "H·W"
    d.io("x", "x", (0, 0))
    d.dot("j1", (0, 0.75))
    d.box("norm1", "LayerNorm over channels", "norm", (0, 1.5), module="norm1")
    row = 2.5
    if downsample:
        d.box("pool", "2×2 average pool", "pooling", (0, row), module="pool")
        d.box("proj_in", "1×1 conv C → 2C", "conv", (0, row + 1), module="proj_in")
        row += 2
    d.box("flat", "flatten to tokens", "reshape", (0, row))
    d.box(
        "attn",
        f"multi-head attention,\n{heads} heads",
        "attention",
        (0, row + 1.1),
        module="attn",
    )
    d.box(
        "bias",
        "relative position\nbias",
        "embedding",
        (-1.25, row + 1.1),
        module="rel_bias",
    )
    d.box("unflat", "back to a map", "reshape", (0, row + 2.2))
    d.op("add1", "+", (0, row + 3.2))
    d.dot("j2", (0, row + 3.9))
    d.box("norm2", "LayerNorm over channels", "norm", (0, row + 4.6), module="norm2")
    d.box(
        "mlp",
        "MLP: 1×1 conv, GELU, 1×1 conv\n(4× wide)",
        "conv",
        (0, row + 5.7),
        module="mlp",
    )
    d.op("add2", "+", (0, row + 6.8))
    d.io("out", "out", (0, row + 7.8), module="")
    d.edge("x", "j1", "B×C×H×W")
    if downsample:
        d.chain(
            "j1 norm1 pool proj_in flat",
            shapes={"pool": "B×C×H/2×W/2", "proj_in": f"B×2C×{hw_out}"},
        )
    else:
        d.chain("j1 norm1 flat")
    d.edge("flat", "attn", f"B×N×{c_out}")
    d.edge("bias", "attn", f"{heads}×N×N", seg=0)
    d.chain(
        "attn unflat add1 j2 norm2 mlp add2 out",
        shapes={
            "attn": f"B×N×{c_out}",
            "unflat": f"B×{c_out}×{hw_out}",
            "add2": f"B×{c_out}×{hw_out}",
        },
    )
    if downsample:
        d.box("sc_pool", "2×2 average pool", "pooling", (1.1, 3.2), module="pool")
        d.box("sc_conv", "1×1 conv C → 2C", "conv", (1.1, 4.5), module="shortcut")
        d.edge("j1", "sc_pool", via=((1.1, 0.75),))
        d.edge("sc_pool", "sc_conv", "B×C×H/2×W/2")
        d.edge("sc_conv", "add1", f"B×2C×{hw_out}", via=((1.1, row + 3.2),), seg=0)
    else:
        _skip(d, "j1", "add1", 1.0, name="identity")
    _skip(d, "j2", "add2", 1.0)
    return d


def window_attention_diagram(
    *, shifted: bool = False, heads: str = "h", title: str | None = None
) -> Diagram:
    """Swin's window attention (Liu et al., 2021): attention inside M×M windows, with a relative bias per head.

    ``shifted=True`` draws the shifted-window form: roll by −s, attend (with a mask keeping wrapped regions
    apart), roll back.
    """
    _check_flags("window_attention_diagram", shifted=shifted)
    _check_symbols("window_attention_diagram", heads=heads)
    d = Diagram(
        title
        if title is not None
        else "Shifted window attention (Swin)"
        if shifted
        else "Window attention"
    )
    d.definitions["n"] = "H·W/M²"
    d.io("x", "x", (0, 0))
    row = 1.0
    if shifted:
        d.box("roll", "cyclic shift by (−s, −s)", "reshape", (0, row))
        row += 1
    d.box("part", "partition into M×M windows", "reshape", (0, row))
    d.box(
        "mha",
        f"multi-head attention,\n{heads} heads, per window",
        "attention",
        (0, row + 1.2),
        module="mha",
    )
    bias = (
        "relative position bias\n+ shift mask" if shifted else "relative position\nbias"
    )
    d.box("bias", bias, "embedding", (-1.25, row + 1.2), module="rel_bias")
    d.box("merge", "merge the windows", "reshape", (0, row + 2.4))
    last = "merge"
    if shifted:
        d.box("unroll", "shift back by (s, s)", "reshape", (0, row + 3.4))
        last = "unroll"
    d.io("out", "out", (0, d.nodes[last].y + 1), module="")
    d.edge("x", "roll" if shifted else "part", "B×C×H×W")
    if shifted:
        d.edge("roll", "part", "B×C×H×W")
    d.edge("part", "mha", "(B·n)×M²×C")
    d.edge("bias", "mha", f"{heads}×M²×M²", seg=0)
    d.edge("mha", "merge", "(B·n)×M²×C")
    if shifted:
        d.edge("merge", "unroll", "B×C×H×W")
    d.edge(last, "out", "B×C×H×W")
    return d


def local_attention_diagram(*, heads: str = "h", title: str | None = None) -> Diagram:
    """SASA local self-attention (Ramachandran et al., 2019): each pixel attends to its k×k neighbourhood."""
    _check_symbols("local_attention_diagram", heads=heads)
    d = Diagram(title if title is not None else "Local self-attention (SASA)")
    d.definitions.update({"N": "H·W", "d": f"C/{heads}"})
    d.io("x", "x", (1, 0))
    d.dot("j", (1, 0.7))
    for col, (key, name) in enumerate((("query", "q"), ("value", "v"), ("key", "k"))):
        d.box(key, f"{name}: 1×1 conv", "conv", (col, 1.6), module=key)
    d.edge("x", "j", "B×C×H×W")
    d.edge("j", "query", via=((0, 0.7),))
    d.edge("j", "value")
    d.edge("j", "key", via=((2, 0.7),))
    d.box("q_flat", "one query per pixel", "reshape", (0, 2.8))
    d.box("v_unfold", "unfold k×k\nneighbourhoods", "reshape", (1, 2.8))
    d.box("k_unfold", "unfold k×k\nneighbourhoods", "reshape", (2, 2.8))
    d.op("k_add", "+", (2, 4.0))
    d.box(
        "offsets",
        "offset embeddings\n(row ‖ column)",
        "embedding",
        (2.95, 4.0),
        module="rel_height",
        params=("rel_width",),
    )
    d.box(
        "attn",
        "attention over the k² neighbours\n(outside the image masked)",
        "attention",
        (1, 5.1),
    )
    d.box("merge", "merge heads", "reshape", (1, 6.3))
    d.io("out", "out", (1, 7.3), module="")
    for key, flat in (("query", "q_flat"), ("value", "v_unfold"), ("key", "k_unfold")):
        d.edge(key, flat, "B×C×H×W" if key == "value" else None)
    d.edge("q_flat", "attn", f"B×{heads}×N×1×d", via=((0, 5.1),), seg=0, side="left")
    d.edge("v_unfold", "attn", f"B×{heads}×N×k²×d")
    d.edge("k_unfold", "k_add", f"B×{heads}×N×k²×d", side="left")
    d.edge("offsets", "k_add", f"{heads}×k²×d", seg=0)
    d.edge("k_add", "attn", via=((2, 5.1),))
    d.edge("attn", "merge", f"B×{heads}×N×1×d")
    d.edge("merge", "out", "B×C×H×W")
    return d


# --------------------------------------------------------------------------------------------------------------
# One drawing function per diagram
# --------------------------------------------------------------------------------------------------------------

# name → (chapter, builder); the tests and the chapters iterate over this table.
DIAGRAMS: dict[str, tuple[int, Callable[..., Diagram]]] = {
    "basic_block": (1, basic_block_diagram),
    "attention": (2, attention_diagram),
    "multi_head_attention": (2, multi_head_attention_diagram),
    "nonlocal_block": (3, nonlocal_block_diagram),
    "patch_embedding": (4, patch_embedding_diagram),
    "encoder_block": (4, encoder_block_diagram),
    "vit": (4, vit_diagram),
    "se": (5, se_diagram),
    "cbam": (5, cbam_diagram),
    "bot_block": (5, bot_block_diagram),
    "mbconv": (5, mbconv_diagram),
    "transformer_block_2d": (5, transformer_block_2d_diagram),
    "window_attention": (5, window_attention_diagram),
    "local_attention": (5, local_attention_diagram),
}


def draw_basic_block(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 1: :func:`basic_block_diagram` drawn (options: ``downsample``, ``channels``, ``size``, ``title``)."""
    return _draw("draw_basic_block", basic_block_diagram, ax, options)


def draw_attention(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 2: :func:`attention_diagram` drawn (options: ``lead``, ``queries``, ``keys``, ``dim``, ``bias``)."""
    return _draw("draw_attention", attention_diagram, ax, options)


def draw_multi_head_attention(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 2: :func:`multi_head_attention_diagram` drawn (options: ``form="tokens"|"2d"``, ``heads``)."""
    return _draw("draw_multi_head_attention", multi_head_attention_diagram, ax, options)


def draw_nonlocal_block(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 3: :func:`nonlocal_block_diagram` drawn (option: ``sub_sample``)."""
    return _draw("draw_nonlocal_block", nonlocal_block_diagram, ax, options)


def draw_patch_embedding(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 4: :func:`patch_embedding_diagram` drawn."""
    return _draw("draw_patch_embedding", patch_embedding_diagram, ax, options)


def draw_encoder_block(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 4: :func:`encoder_block_diagram` drawn (option: ``heads``)."""
    return _draw("draw_encoder_block", encoder_block_diagram, ax, options)


def draw_vit(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 4: :func:`vit_diagram` drawn."""
    return _draw("draw_vit", vit_diagram, ax, options)


def draw_se(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 5: :func:`se_diagram` drawn."""
    return _draw("draw_se", se_diagram, ax, options)


def draw_cbam(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 5: :func:`cbam_diagram` drawn (option: ``spatial_norm``)."""
    return _draw("draw_cbam", cbam_diagram, ax, options)


def draw_bot_block(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 5: :func:`bot_block_diagram` drawn (options: ``downsample``, ``heads``)."""
    return _draw("draw_bot_block", bot_block_diagram, ax, options)


def draw_mbconv(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 5: :func:`mbconv_diagram` drawn (option: ``downsample``)."""
    return _draw("draw_mbconv", mbconv_diagram, ax, options)


def draw_transformer_block_2d(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 5: :func:`transformer_block_2d_diagram` drawn (options: ``downsample``, ``heads``)."""
    return _draw("draw_transformer_block_2d", transformer_block_2d_diagram, ax, options)


def draw_window_attention(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 5: :func:`window_attention_diagram` drawn (options: ``shifted``, ``heads``)."""
    return _draw("draw_window_attention", window_attention_diagram, ax, options)


def draw_local_attention(ax: plt.Axes | None = None, **options: Any) -> Figure:
    """Chapter 5: :func:`local_attention_diagram` drawn (option: ``heads``)."""
    return _draw("draw_local_attention", local_attention_diagram, ax, options)

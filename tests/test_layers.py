"""The package's shape: a declared layer order that no import breaks, and no ``nlbook`` import inside a function.

An import placed inside a function is how an import circle hides: the module loads, and the circle closes only
when the function runs. These tests read the source (``ast``), so they check every module without importing it,
and say which line breaks the rule. To add a module, put it in the lowest layer that its imports allow.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nlbook"

# Lowest first. A module may import only modules of strictly lower layers.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "foundations: no other nlbook module",
        frozenset({"version", "checks", "records", "distributed", "minimal", "convergence", "stats"}),
    ),
    # the long-range task and the diagrams check their arguments with nlbook.checks
    ("run settings, and the long-range task", frozenset({"runtime", "longrange"})),
    ("building blocks and instruments", frozenset({"cnn", "attention", "bench"})),
    ("models built from blocks, and data", frozenset({"nonlocal_block", "vit", "hybrid", "data"})),
    ("models built from models, and the training loop", frozenset({"vit_torchvision", "coatnet", "train"})),
    ("attention with locality (models built on CoAtNet's bias table)", frozenset({"local_attention"})),
    ("the zoo, figures and diagrams, fine-tuning", frozenset({"viz", "zoo", "finetune", "diagrams"})),
    ("chapters' experiments and the launcher", frozenset({"comparison", "longrange_sweep", "launch"})),
)


def layer_of(module: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        if module in members:
            return i
    raise KeyError(module)


def modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def nlbook_imports(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """Every ``import nlbook.x`` / ``from nlbook(.x) import ...`` node with the nlbook module(s) it names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, a.name.split(".", 2)[1]) for a in node.names if a.name.startswith("nlbook.")]
            found += [(node, "") for a in node.names if a.name == "nlbook"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "nlbook":
                found += [(node, a.name) for a in node.names]  # from nlbook import zoo
            elif node.module.startswith("nlbook."):
                found.append((node, node.module.split(".")[1]))
    return found


def function_level(tree: ast.AST) -> set[int]:
    """Line numbers of import statements that sit inside a function or class body."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    lines.add(inner.lineno)
    return lines


def check_module(name: str, source: str) -> list[str]:
    """The rule violations of one module's source, as readable lines (empty: none)."""
    tree = ast.parse(source)
    inside = function_level(tree)
    problems = []
    for node, target in nlbook_imports(tree):
        where = f"nlbook/{name}.py:{node.lineno}"
        if node.lineno in inside:
            problems.append(f"{where}: imports nlbook{'.' + target if target else ''} inside a function")
        if not target:
            problems.append(f"{where}: imports the package itself; import the module that owns the name")
        elif target not in modules() and target != "__version__":
            continue  # a name of the package's __init__ (e.g. __version__) is not a module
        elif layer_of(target) >= layer_of(name):
            problems.append(
                f"{where}: {name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)}); "
                "a module may import only lower layers"
            )
    return problems


def test_every_module_has_a_layer() -> None:
    missing = [m for m in modules() if not any(m in members for _, members in LAYERS)]
    assert not missing, f"put these modules into LAYERS in {__file__}: {missing}"
    listed = {m for _, members in LAYERS for m in members}
    assert listed <= set(modules()), f"LAYERS lists modules that do not exist: {sorted(listed - set(modules()))}"


@pytest.mark.parametrize("name", modules())
def test_imports_follow_the_layers(name: str) -> None:
    problems = check_module(name, (PACKAGE / f"{name}.py").read_text())
    assert not problems, "\n".join(problems)


def test_the_checks_can_fail() -> None:
    # a function-level import, an upward import and an import of the package itself are all caught
    source = inspect.cleandoc(
        """
        from nlbook.zoo import build_model
        import nlbook

        def f():
            from nlbook.data import load_dataset
        """
    )
    problems = "\n".join(check_module("cnn", source))
    assert "imports zoo" in problems and "layer" in problems
    assert "inside a function" in problems
    assert "the package itself" in problems
    assert not check_module("zoo", "from nlbook.cnn import ResNet\n")


# ----------------------------------------------------------------------------------------------------------
# One initialisation style, one keyword vocabulary
# ----------------------------------------------------------------------------------------------------------

READER_FORMS = {"minimal", "diagrams"}  # shortest forms for reading: loaded with production weights in tests


def init_calls_outside_reset_parameters(source: str) -> list[int]:
    """Lines of ``nn.init.*`` / ``torch.nn.init.*`` calls that are not inside a ``reset_parameters`` method."""
    tree = ast.parse(source)
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "reset_parameters":
            allowed |= {n.lineno for n in ast.walk(node) if hasattr(n, "lineno")}
    bad = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and "init." in ast.unparse(node.func)
            and ast.unparse(node.func).startswith(("nn.init.", "torch.nn.init.", "init."))
        ):
            if node.lineno not in allowed:
                bad.append(node.lineno)
    return bad


@pytest.mark.parametrize("name", [m for m in modules() if m not in READER_FORMS])
def test_parameters_are_initialised_in_reset_parameters(name: str) -> None:
    bad = init_calls_outside_reset_parameters((PACKAGE / f"{name}.py").read_text())
    assert not bad, f"nlbook/{name}.py initialises outside reset_parameters() at lines {bad}"


def test_init_check_can_fail() -> None:
    source = "class A:\n    def __init__(self):\n        nn.init.zeros_(self.w)\n    def reset_parameters(self):\n"
    source += "        nn.init.ones_(self.w)\n"
    assert init_calls_outside_reset_parameters(source) == [3]


# The package's words for the same knobs (timm's layers use one vocabulary too). Synonyms are errors.
VOCABULARY = {
    "dropout": ("proj_drop", "drop", "drop_rate", "dropout_rate", "proj_dropout", "p_drop"),
    "attn_dropout": ("attn_drop", "attn_drop_rate", "attention_dropout"),
    "drop_path": ("drop_path_rate", "stochastic_depth", "sd_prob", "droppath"),
    "norm_layer": ("norm", "norm_fn", "normalization"),
    "act_layer": ("act", "activation", "act_fn", "nonlinearity"),
}


def constructor_keywords() -> dict[str, list[str]]:
    import importlib

    from torch import nn

    out = {}
    for name in modules():
        if name in READER_FORMS:
            continue
        module = importlib.import_module(f"nlbook.{name}")
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if inspect.isclass(obj) and issubclass(obj, nn.Module):
                out[f"{name}.{attr}"] = list(inspect.signature(obj.__init__).parameters)
            elif inspect.isfunction(obj):
                out[f"{name}.{attr}"] = list(inspect.signature(obj).parameters)
    return out


def synonyms_used(keywords: dict[str, list[str]]) -> list[str]:
    bad = []
    for where, params in keywords.items():
        for word, synonyms in VOCABULARY.items():
            bad += [f"{where}({p}=...): say {word}" for p in params if p in synonyms]
    return bad


def test_one_keyword_vocabulary() -> None:
    bad = synonyms_used(constructor_keywords())
    assert not bad, "\n".join(bad)


def test_vocabulary_check_can_fail() -> None:
    assert synonyms_used({"x.Block": ["dim", "attn_drop"]}) == ["x.Block(attn_drop=...): say attn_dropout"]


@pytest.mark.parametrize("name", modules())
def test_module_docstring_names_its_chapter(name: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / f"{name}.py").read_text())) or ""
    assert doc.startswith(("Chapter ", "Chapters ", "Appendix ", "Every chapter")), (
        f"nlbook/{name}.py: the docstring's first words must name its chapter ('Chapter N — ...', "
        f"'Appendix A — ...' or 'Every chapter — ...'), got {doc[:60]!r}"
    )


def test_contributing_lists_the_same_layers() -> None:
    """CONTRIBUTING.md's "Layers" table names the modules of each layer exactly as LAYERS does."""
    import re

    text = (PACKAGE.parent / "CONTRIBUTING.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", text, flags=re.M)
    documented = {int(n): frozenset(re.findall(r"`(\w+)`", mods)) for n, mods in rows}
    declared = {i: members for i, (_, members) in enumerate(LAYERS)}
    assert documented == declared, f"CONTRIBUTING.md's layer table {documented} differs from LAYERS {declared}"

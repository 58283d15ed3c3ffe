"""The users' CI: the GitHub Actions workflows parse, have the structure GitHub expects, and call the README's commands.

* ``test.yml``   -- on push and pull request: installs Debian's chromium + chromedriver, then runs the README's
  test command, in a Debian container (Ubuntu has Chromium only as a snap).
* ``book.yml``   -- on push to main: runs the README's build command, uploads ``_build/html`` with
  ``actions/upload-pages-artifact`` and deploys it with ``actions/deploy-pages``.
* ``colab.yml``  -- weekly (and on demand): installs nlbook as the notebooks' set-up cell does (a git URL, not
  editable), checks that torch, torchvision and numpy are untouched, and executes the chapters with nbval inside
  Colab's public runtime image.
* ``compat.yml`` -- on push and pull request: the unit tests and two chapters' checked cells at the declared lower
  bounds (Python 3.11, ``requirements/compat-lower.txt``) and with a Colab-era torch on Python 3.12
  (``requirements/compat-colab.txt``) and Python 3.13 (``requirements/compat-py313.txt``);
  ``tools/compat_check.py`` builds the same environments locally.

The README's commands are read from its fenced ``bash`` blocks, so renaming a command without updating CI (or the
other way round) fails here. Each structural check is a function that is also run on a broken workflow below, to
show it can fail.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
COLAB_IMAGE = "us-docker.pkg.dev/colab-images/public/runtime"

# Keys GitHub accepts (https://docs.github.com/actions/reference/workflow-syntax-for-github-actions); a typo such
# as `run-on` or `with:` on a `run` step is otherwise silently ignored or fails only on GitHub.
WORKFLOW_KEYS = {"name", "run-name", "on", "permissions", "env", "defaults", "concurrency", "jobs"}
JOB_KEYS = {
    "name", "needs", "permissions", "if", "runs-on", "environment", "concurrency", "outputs", "env", "defaults",
    "steps", "timeout-minutes", "strategy", "continue-on-error", "container", "services", "uses", "with", "secrets",
}  # fmt: skip
STEP_KEYS = {
    "id", "if", "name", "uses", "run", "working-directory", "shell", "with", "env", "continue-on-error",
    "timeout-minutes",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Reading the README and the workflows
# ---------------------------------------------------------------------------------------------------------------


def readme_commands(text: str) -> dict[str, str]:
    """``{"build": ..., "test": ...}`` from the README's fenced bash blocks, named by the bold label above each."""
    commands: dict[str, str] = {}
    for m in re.finditer(r"^\*\*(?P<label>[^*]+)\*\*.*?\n```(?:bash|sh|console)\n(?P<body>.*?)^```", text, re.M | re.S):
        label = m.group("label").lower()
        lines = [ln.strip() for ln in m.group("body").splitlines() if ln.strip() and not ln.strip().startswith("#")]
        kind = "build" if "build" in label else "test" if "test" in label else None
        if kind and lines:
            assert kind not in commands, f"the README has two {kind} commands"
            commands[kind] = "\n".join(lines)
    return commands


README_COMMANDS = readme_commands((ROOT / "README.md").read_text())


def load(name: str) -> dict:
    path = WORKFLOWS / name
    assert path.exists(), f"missing workflow {path.relative_to(ROOT)}"
    return yaml.safe_load(path.read_text())


def triggers(wf: dict) -> dict:
    """The ``on:`` block (YAML 1.1 reads the bare key ``on`` as the boolean True)."""
    on = wf.get("on", wf.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict), f"no `on:` triggers in workflow {wf.get('name')!r}"
    return on


def steps(wf: dict) -> list[tuple[str, dict]]:
    return [(job_id, step) for job_id, job in wf["jobs"].items() for step in job.get("steps", [])]


def run_lines(wf: dict, job_id: str | None = None) -> list[str]:
    """Every shell line the workflow runs (multi-line ``run:`` blocks split, line continuations joined)."""
    lines = []
    for jid, step in steps(wf):
        if "run" in step and (job_id is None or jid == job_id):
            script = re.sub(r"\\\n\s*", " ", step["run"])
            lines += [ln.strip() for ln in script.splitlines() if ln.strip()]
    return lines


def uses(wf: dict) -> list[str]:
    return [step["uses"] for _, step in steps(wf) if "uses" in step]


# ---------------------------------------------------------------------------------------------------------------
# Checks (pure functions: a list of problems, empty when the workflow is right)
# ---------------------------------------------------------------------------------------------------------------


def structure_problems(wf: dict) -> list[str]:
    problems = []
    keys = {"on" if k is True else k for k in wf}
    problems += [f"unknown workflow key {k!r}" for k in sorted(keys - WORKFLOW_KEYS, key=str)]
    if not wf.get("name"):
        problems.append("workflow has no name")
    triggers(wf)
    jobs = wf.get("jobs") or {}
    if not jobs:
        problems.append("no jobs")
    for job_id, job in jobs.items():
        problems += [f"job {job_id}: unknown key {k!r}" for k in sorted(set(job) - JOB_KEYS)]
        if "runs-on" not in job and "uses" not in job:
            problems.append(f"job {job_id}: no runs-on")
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            if need not in jobs:
                problems.append(f"job {job_id}: needs unknown job {need!r}")
        if "uses" not in job and not job.get("steps"):
            problems.append(f"job {job_id}: no steps")
        for i, step in enumerate(job.get("steps", [])):
            problems += [f"job {job_id} step {i}: unknown key {k!r}" for k in sorted(set(step) - STEP_KEYS)]
            if ("uses" in step) == ("run" in step):
                problems.append(f"job {job_id} step {i}: needs exactly one of `uses` and `run`")
            if "uses" in step and not re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+(\.\d+)*", step["uses"]):
                problems.append(f"job {job_id} step {i}: pin {step['uses']!r} to a release tag like @v4")
    return problems


def calls_command(wf: dict, command: str, job_id: str | None = None) -> bool:
    """True when every line of ``command`` is run, in order, as a whole line of the workflow (job)."""
    lines = run_lines(wf, job_id)
    want = command.splitlines()
    return any(lines[i : i + len(want)] == want for i in range(len(lines)))


def installs_chromium_before(wf: dict, command: str) -> list[str]:
    problems = []
    for job_id, job in wf["jobs"].items():
        if not calls_command(wf, command, job_id):
            continue
        container = job.get("container") or ""
        image = container.get("image", "") if isinstance(container, dict) else str(container)
        if not re.search(r"bookworm|trixie|debian", image):
            problems.append(f"job {job_id}: Debian's chromium-driver needs a Debian container, got {image or 'none'!r}")
        lines = run_lines(wf, job_id)
        first_test = next(i for i, ln in enumerate(lines) if ln == command.splitlines()[0])
        apt = [
            i for i, ln in enumerate(lines) if re.search(r"apt(-get)? install\b.*\bchromium\b.*\bchromium-driver\b", ln)
        ]
        if not apt or apt[0] > first_test:
            problems.append(f"job {job_id}: installs no chromium + chromium-driver with apt before the tests")
    return problems


def setup_cell_pip() -> str:
    """The ``pip install`` line of the notebooks' set-up cell (chapter 1's; tests/test_notebook_setup_cells.py keeps
    every chapter's the same), e.g. ``pip install -q "nlbook @ git+https://github.com/nlbook/nlbook@main"``."""
    nb = nbformat.read(ROOT / "book" / "01_cnn_basics.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "nlbook-setup" in c.metadata.get("tags", []))
    line = next(ln.strip() for ln in cell.source.splitlines() if "pip install" in ln)
    return line.lstrip("%!")


def setup_cell_install_problems(wf: dict) -> list[str]:
    """The workflow installs nlbook with the set-up cell's own command -- a git URL, not editable -- at the commit
    under test, and checks that torch, torchvision and numpy are the same before and after."""
    problems = []
    lines = run_lines(wf)
    want = re.sub(r"git\+https://[^\"]+", "git+$NLBOOK_GIT", setup_cell_pip())
    installs = [i for i, ln in enumerate(lines) if ln.endswith(want)]
    if not installs:
        problems.append(f"no `{want}` (the set-up cell's install, NLBOOK_GIT = this repository at this commit)")
    if '-e NLBOOK_GIT="${{ github.server_url }}/${{ github.repository }}@${{ github.sha }}"' not in " ".join(lines):
        problems.append("NLBOOK_GIT is not this repository at the commit under test")
    if any(re.search(r"pip install\b.*\s(-e|--editable)\s", ln) for ln in lines):
        problems.append("an editable install: the set-up cell installs from a git URL")
    pip = [i for i, ln in enumerate(lines) if "pip install" in ln]
    tests = [i for i, ln in enumerate(lines) if re.search(r"\bpytest\b", ln)]
    recorded = [i for i, ln in enumerate(lines) if "torch.__version__" in ln or re.match(r"versions\b.*\|\s*tee\b", ln)]
    compared = [i for i, ln in enumerate(lines) if re.search(r"\bdiff\b", ln)]
    if not (pip and recorded and recorded[0] < pip[0]):
        problems.append("torch/torchvision/numpy versions are not recorded before the install")
    if not (pip and compared and tests and pip[-1] < compared[0] < tests[0]):
        problems.append("the versions are not compared (diff) after the installs and before the tests")
    return problems


def pins(path: Path) -> dict[str, Version]:
    """``name==version`` lines of a constraints file, by canonical name."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: pin exact versions, got {line!r}"
            out[canonicalize_name(req.name)] = Version(spec.version)
    return out


def lower_bound_problems(dependencies: list[str], pinned: dict[str, Version]) -> list[str]:
    """Every dependency pinned at its declared lower bound: ``torch>=2.4`` -> a 2.4.x release, nothing missing."""
    problems = []
    declared = {}
    for dep in dependencies:
        req = Requirement(dep)
        bounds = [Version(s.version) for s in req.specifier if s.operator == ">="]
        if len(bounds) != 1:
            problems.append(f"{dep}: declare one lower bound (>=)")
            continue
        declared[canonicalize_name(req.name)] = (req, bounds[0])
    for name, (req, bound) in declared.items():
        got = pinned.get(name)
        if got is None:
            problems.append(f"{name}: not pinned (declared {req.specifier})")
        elif got not in req.specifier or got.release[: len(bound.release)] != bound.release:
            problems.append(f"{name}: pinned {got}, but the declared lower bound is {bound}")
    problems += [f"{name}: pinned but not a dependency" for name in sorted(set(pinned) - set(declared))]
    return problems


# ---------------------------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------------------------


def test_readme_has_build_and_test_commands() -> None:
    assert set(README_COMMANDS) == {"build", "test"}, f"README.md commands found: {README_COMMANDS}"


@pytest.mark.parametrize("name", ["test.yml", "book.yml", "colab.yml", "compat.yml"])
def test_workflow_structure(name: str) -> None:
    assert structure_problems(load(name)) == []


def test_test_workflow_runs_readme_test_command_on_push_and_pr() -> None:
    wf = load("test.yml")
    assert {"push", "pull_request"} <= set(triggers(wf)), f"test.yml triggers: {list(triggers(wf))}"
    assert calls_command(wf, README_COMMANDS["test"]), f"test.yml does not run {README_COMMANDS['test']!r}"
    assert installs_chromium_before(wf, README_COMMANDS["test"]) == []
    assert any(u.startswith("actions/checkout@") for u in uses(wf))


def test_book_workflow_builds_and_deploys_pages_from_main() -> None:
    wf = load("book.yml")
    on = triggers(wf)
    assert "push" in on and (on["push"] or {}).get("branches") == ["main"], f"book.yml must publish from main: {on}"
    assert calls_command(wf, README_COMMANDS["build"]), f"book.yml does not run {README_COMMANDS['build']!r}"
    upload = [s for _, s in steps(wf) if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert upload and upload[0].get("with", {}).get("path") == "_build/html", "upload _build/html as the Pages artifact"
    deploy_jobs = [j for j, s in steps(wf) if s.get("uses", "").startswith("actions/deploy-pages@")]
    assert deploy_jobs, "no actions/deploy-pages step"
    deploy = wf["jobs"][deploy_jobs[0]]
    build_job = next(j for j, s in steps(wf) if s is upload[0])
    needs = deploy.get("needs", [])
    assert build_job in ([needs] if isinstance(needs, str) else needs), "the deploy job must wait for the build"
    perms = {**wf.get("permissions", {}), **deploy.get("permissions", {})}
    assert perms.get("pages") == "write" and perms.get("id-token") == "write", f"Pages needs these permissions: {perms}"
    assert (deploy.get("environment") or {}).get("name") == "github-pages"


def test_colab_workflow_runs_chapters_in_colab_image_weekly() -> None:
    wf = load("colab.yml")
    on = triggers(wf)
    crons = [entry["cron"] for entry in on.get("schedule") or []]
    assert crons, "colab.yml has no schedule"
    minute, hour, dom, month, dow = crons[0].split()
    assert dom == "*" and month == "*" and re.fullmatch(r"[0-6]", dow), f"run weekly on one weekday: {crons[0]!r}"
    assert "workflow_dispatch" in on, "allow running the Colab check by hand"
    text = (WORKFLOWS / "colab.yml").read_text()
    assert COLAB_IMAGE in text, f"colab.yml does not use {COLAB_IMAGE}"
    script = " ".join(run_lines(wf))
    assert re.search(r"docker run\b.*(\$COLAB_IMAGE|" + re.escape(COLAB_IMAGE) + ")", script), (
        "no docker run of the image"
    )
    assert setup_cell_install_problems(wf) == []
    assert re.search(r"pytest\b.*--nbval(-lax)?\b.*\bbook\b", script), "the chapters are not executed with nbval"
    assert "--nbval-sanitize-with tests/nbval_sanitize.cfg" in script


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def compat_matrix() -> dict[str, dict]:
    wf = load("compat.yml")
    (job,) = wf["jobs"].values()
    return {entry["env"]: entry for entry in job["strategy"]["matrix"]["include"]}


def test_compat_workflow_pins_exactly_the_declared_lower_bounds() -> None:
    lower = compat_matrix()["lower"]
    python_bound = Version(PYPROJECT["requires-python"].removeprefix(">="))
    assert Version(str(lower["python"])) == python_bound, f"lower bound job runs Python {lower['python']}"
    assert lower_bound_problems(PYPROJECT["dependencies"], pins(ROOT / lower["pins"])) == []


def test_compat_workflow_has_a_colab_era_python_and_torch() -> None:
    colab = compat_matrix()["colab"]
    assert str(colab["python"]) == "3.12", "Colab runs Python 3.12"
    pinned = pins(ROOT / colab["pins"])
    assert Version("2.9") <= pinned["torch"] < Version("2.12"), f"Colab has carried torch 2.9-2.11: {pinned}"
    assert {"torch", "torchvision", "numpy"} <= set(pinned)
    assert lower_bound_problems(PYPROJECT["dependencies"], pinned) != []  # not the lower bounds by accident


def test_compat_workflow_installs_the_pins_and_runs_tests_and_chapters() -> None:
    wf = load("compat.yml")
    assert {"push", "pull_request"} <= set(triggers(wf))
    lines = run_lines(wf)
    cpu_index = "--index-url https://download.pytorch.org/whl/cpu"
    assert any("pip install -c ${{ matrix.pins }}" in ln and cpu_index in ln and "torch" in ln for ln in lines)
    assert any(re.search(r'pip install -c \$\{\{ matrix.pins \}\} -e "\.\[test\]"', ln) for ln in lines)
    unit = [ln for ln in lines if re.search(r"pytest\b.*-m \"not browser\b.*\btests$", ln)]
    assert unit, "the unit tests (all but the browser test) are not run"
    chapters = [ln for ln in lines if "--nbval-lax" in ln]
    assert chapters and "--nbval-sanitize-with tests/nbval_sanitize.cfg" in chapters[0]
    notebooks = re.findall(r"book/\S+\.ipynb", chapters[0])
    assert len(notebooks) == 2 and all((ROOT / nb).exists() for nb in notebooks), notebooks


def test_local_compat_script_builds_the_same_environments() -> None:
    spec = importlib.util.spec_from_file_location("compat_check", ROOT / "tools" / "compat_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    matrix = compat_matrix()
    assert set(script.ENVS) == set(matrix)
    for name, env in script.ENVS.items():
        assert (env["python"], env["pins"]) == (str(matrix[name]["python"]), matrix[name]["pins"]), name
    chapters = next(ln for ln in run_lines(load("compat.yml")) if "--nbval-lax" in ln)
    assert re.findall(r"book/\S+\.ipynb", chapters) == script.CHAPTERS


def test_colab_workflow_installs_like_the_setup_cell() -> None:
    assert setup_cell_install_problems(load("colab.yml")) == []


def test_ci_entry_point_calls_readme_test_command() -> None:
    run = (ROOT / ".ci" / "run").read_text()
    lines = [ln.strip() for ln in run.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert README_COMMANDS["test"] in lines, f".ci/run does not call {README_COMMANDS['test']!r}"
    assert any(re.search(r"apt-get install.*chromium chromium-driver", ln) for ln in lines)


# ---------------------------------------------------------------------------------------------------------------
# The checks can fail
# ---------------------------------------------------------------------------------------------------------------

BROKEN = {
    "name": "broken",
    True: {"push": None},
    "jobs": {
        "a": {
            "run-on": "ubuntu-latest",  # typo
            "needs": "nope",
            "steps": [
                {"run": "bash tools/tests.sh", "with": {"x": 1}},
                {"uses": "actions/checkout@main"},
                {"name": "neither"},
            ],
        }
    },
}


def test_checks_catch_a_broken_workflow() -> None:
    problems = structure_problems(BROKEN)
    for fragment in (
        "unknown key 'run-on'",
        "no runs-on",
        "needs unknown job 'nope'",
        "step 1: pin 'actions/checkout@main'",
        "step 2: needs exactly one of",
    ):
        assert any(fragment in p for p in problems), f"{fragment!r} not reported in {problems}"
    assert not calls_command(BROKEN, "bash tools/test.sh")
    fixed = {
        "name": "x",
        "on": {"push": None},
        "jobs": {"a": {"runs-on": "u", "steps": [{"run": "bash tools/test.sh"}]}},
    }
    assert structure_problems(fixed) == []
    assert installs_chromium_before(fixed, "bash tools/test.sh") != []  # no Debian container, no apt
    assert calls_command(fixed, "bash tools/test.sh")


def test_readme_parser() -> None:
    text = (
        "x\n\n**Build the book** (slow):\n\n```bash\n# comment\nbash b.sh\n```\n\n"
        "**Run every test**\n\n```bash\nbash t.sh\n```\n"
    )
    assert readme_commands(text) == {"build": "bash b.sh", "test": "bash t.sh"}


def test_compat_checks_can_fail() -> None:
    deps = ["torch>=2.4", "numpy>=1.24", "einops>=0.7"]
    good = {"torch": Version("2.4.1"), "numpy": Version("1.24.4"), "einops": Version("0.7.0")}
    assert lower_bound_problems(deps, good) == []
    broken = {"torch": Version("2.5.0"), "numpy": Version("1.24.4"), "tqdm": Version("4.66.0")}
    problems = lower_bound_problems(deps, broken)
    for fragment in ("torch: pinned 2.5.0", "einops: not pinned", "tqdm: pinned but not a dependency"):
        assert any(fragment in p for p in problems), f"{fragment!r} not reported in {problems}"
    editable = {
        "name": "x",
        "on": {"push": None},
        "jobs": {"a": {"runs-on": "u", "steps": [{"run": 'pip install -q -e ".[test]"\npytest --nbval-lax book'}]}},
    }
    problems = setup_cell_install_problems(editable)
    for fragment in ("no `pip install", "an editable install", "not recorded before", "not compared"):
        assert any(fragment in p for p in problems), f"{fragment!r} not reported in {problems}"

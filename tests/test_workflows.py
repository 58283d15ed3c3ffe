"""The users' CI: the GitHub Actions workflows parse, have the structure GitHub expects, and call the README's commands.

* ``test.yml``   -- on push and pull request: installs Debian's chromium + chromedriver, then runs the README's
  test command, in a Debian container (Ubuntu has Chromium only as a snap).
* ``book.yml``   -- on push to main: runs the README's build command, uploads ``_build/html`` with
  ``actions/upload-pages-artifact`` and deploys it with ``actions/deploy-pages``.
* ``colab.yml``  -- weekly (and on demand): executes the chapters with nbval inside Colab's public runtime image.

The README's commands are read from its fenced ``bash`` blocks, so renaming a command without updating CI (or the
other way round) fails here. Each structural check is a function that is also run on a broken workflow below, to
show it can fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

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


# ---------------------------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------------------------


def test_readme_has_build_and_test_commands() -> None:
    assert set(README_COMMANDS) == {"build", "test"}, f"README.md commands found: {README_COMMANDS}"


@pytest.mark.parametrize("name", ["test.yml", "book.yml", "colab.yml"])
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
    assert re.search(r"pip install[^;]*\s-e\s+\"?\.(\[\w+\])?\"?", script), "nlbook is not installed from the checkout"
    assert re.search(r"pytest\b.*--nbval(-lax)?\b.*\bbook\b", script), "the chapters are not executed with nbval"
    assert "--nbval-sanitize-with tests/nbval_sanitize.cfg" in script


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

#!/usr/bin/env python3
"""Build the compatibility environments locally and record how nlbook fares in them.

The environments ``.github/workflows/compat.yml`` runs in CI:

* ``lower`` -- Python 3.11 with every dependency at the lower bound pyproject.toml declares
  (``requirements/compat-lower.txt``);
* ``colab`` -- Python 3.12 with a Colab-era torch, torchvision and numpy (``requirements/compat-colab.txt``);
* ``py313`` -- Python 3.13 with the same torch (``requirements/compat-py313.txt``): the newest Python whose
  wording nlbook's messages must not depend on.

For each, this script creates ``.venv-compat-<env>`` (gitignored) with pyenv's interpreter, installs nlbook with
its test extra from PyPI under those pins (torch's PyPI wheels are large: the first install downloads several GB),
then checks what the notebooks' set-up cell (``pip install "nlbook @ git+..."``) would install there
(``pip install --dry-run`` from this repository's HEAD: torch, torchvision and numpy must stay), and runs

1. the unit tests: ``pytest tests -m "not browser and not gpu"`` (the rendered-book test needs a built book and
   Chromium; GPU tests need CUDA);
2. the checked cells of two chapters with nbval (chapter 2: the fused attention kernels; chapter 3: module reprs),

and writes ``benchmarks/results/compat_<env>.json`` with its provenance (date, git commit, Python, torch,
torchvision, numpy, the commands) and pass/fail counts with every failure listed. Stdlib only, so any Python 3.11+
can run it::

    nice -n 10 python3 tools/compat_check.py                 # every environment
    python3 tools/compat_check.py --env lower --install-only
    python3 tools/compat_check.py --env colab --skip-slow    # also deselect tests marked slow
    python3 tools/compat_check.py --env py313 --tests tests/test_bad_input.py --no-chapters

An environment that cannot be installed is recorded as such (``"install": "failed"`` with pip's last lines).
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ENVS = {
    "lower": {"python": "3.11", "pins": "requirements/compat-lower.txt"},
    "colab": {"python": "3.12", "pins": "requirements/compat-colab.txt"},
    "py313": {"python": "3.13", "pins": "requirements/compat-py313.txt"},
}
CHAPTERS = ["book/02_self_attention.ipynb", "book/03_nonlocal.ipynb"]
TEST_ENV = {
    "NLBOOK_DATASET": "digits",
    "NLBOOK_PROFILE": "quick",
    "TQDM_DISABLE": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}


def find_python(version: str) -> str:
    """pyenv's newest ``version.*`` interpreter, else ``pythonX.Y`` on PATH."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(glob.glob(str(root / "versions" / f"{version}.*" / "bin" / f"python{version}")))
    if found:
        return found[-1]
    on_path = shutil.which(f"python{version}")
    if on_path:
        return on_path
    raise SystemExit(f"error: no Python {version} (looked in {root}/versions and on PATH)")


def run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` from the repository root, appending its output to ``log``; return its exit status."""
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)


def tail(log: Path, n: int = 30) -> list[str]:
    return log.read_text(errors="replace").splitlines()[-n:]


def install(name: str, venv: Path, log: Path) -> dict:
    spec = ENVS[name]
    python = find_python(spec["python"])
    if not (venv / "bin" / "python").exists():
        if run([python, "-m", "venv", str(venv)], log):
            return {"install": "failed", "python_used": python, "pip_tail": tail(log)}
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    start = time.time()
    status = run(pip + ["install", "--quiet", "--upgrade", "pip"], log) or run(
        pip + ["install", "--quiet", "-c", spec["pins"], "-e", ".[test]"], log
    )
    if status:
        return {"install": "failed", "python_used": python, "pip_tail": tail(log)}
    return {"install": "ok", "python_used": python, "install_s": round(time.time() - start)}


def versions(venv: Path) -> dict:
    code = (
        "import json, platform, sys, numpy, torch, torchvision, matplotlib, sklearn, einops, tqdm, pytest\n"
        "print(json.dumps({'python': platform.python_version(), 'torch': torch.__version__,"
        " 'torchvision': torchvision.__version__, 'numpy': numpy.__version__, 'matplotlib': matplotlib.__version__,"
        " 'scikit-learn': sklearn.__version__, 'einops': einops.__version__, 'tqdm': tqdm.__version__,"
        " 'pytest': pytest.__version__}))"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=ROOT, capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr.strip().splitlines()[-1:]}


def junit_summary(xml: Path) -> dict:
    """Counts and the failing test ids (with the first line of each message) from a JUnit XML report."""
    if not xml.exists():
        return {"error": "pytest wrote no report"}
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            counts["failed" if bad.tag == "failure" else "errors"] += 1
            message = (bad.get("message") or bad.text or "").strip().splitlines()
            failures.append({"test": test_id, "message": message[0][:300] if message else ""})
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return {**counts, "failures": failures}


def setup_cell_install(py: str, log: Path) -> dict:
    """What the notebooks' set-up cell (``pip install "nlbook @ git+<repository>@<ref>"``, not editable) would
    install into this environment, asked with ``pip install --dry-run`` at this repository's HEAD commit: torch,
    torchvision and numpy must not be among it (Colab keeps its own)."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    url = f"nlbook @ git+file://{ROOT}@{commit}"
    shown = f'pip install --dry-run "{url}"'
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        status = run([py, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report), url], log)
        if status or not report.exists():
            return {"command": shown, "exit_status": status, "error": tail(log, 5)}
        plan = json.loads(report.read_text())["install"]
    planned = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in plan}
    return {
        "command": shown,
        "would_install": planned,
        "torch_torchvision_numpy_untouched": not set(planned) & {"torch", "torchvision", "numpy"},
    }


def node_id(junit_id: str) -> str:
    """``tests.test_x::test_y[a]`` (JUnit's classname::name) -> ``tests/test_x.py::test_y[a]`` (pytest's node id)."""
    classname, name = junit_id.split("::", 1)
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        if (ROOT / Path(*parts[:cut])).with_suffix(".py").exists():
            return "::".join(["/".join(parts[:cut]) + ".py", *parts[cut:], name])
    return junit_id


def rerun_failures(part: dict, py: str, name: str, log: Path, env: dict[str, str]) -> dict:
    """Run the failed tests (or notebooks) once more. The working tree may be edited while a long run goes on
    (several people share it): a failure that passes on the rerun came from a half-finished edit, one that fails
    again is real."""
    failed = [f["test"] for f in part.get("failures", [])]
    # a notebook's cells run in order: rerun the whole notebook (junit names a cell "book.02_x.ipynb::Cell 3")
    notebooks = sorted({t.split("::")[0].replace(".", "/", 1) for t in failed if ".ipynb::" in t})
    ids = [node_id(t) for t in failed if ".ipynb::" not in t] + notebooks
    if not ids:
        return {}
    nbval = ["--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "rerun.xml"
        cmd = [py, "-m", "pytest", "-p", "no:cacheprovider", "-q", *(nbval if notebooks else []), *ids]
        cmd.append(f"--junitxml={xml}")
        start = time.time()
        status = run(cmd, log, env)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        return {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "git_commit": commit.strip(),
            "command": f".venv-compat-{name}/bin/python -m pytest -q <the {len(ids)} failed tests or notebooks>",
            "exit_status": status,
            "wall_s": round(time.time() - start),
            **junit_summary(xml),
        }


def child_env() -> dict[str, str]:
    env = {**os.environ, **TEST_ENV, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("MPLBACKEND", None)  # nbval's kernels must keep the inline backend
    return env


def check(name: str, skip_slow: bool, install_only: bool, skip_install: bool, tests: list[str], chapters: bool) -> dict:
    venv = ROOT / f".venv-compat-{name}"
    log = RESULTS / "tmp" / f"compat_{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    record: dict = {
        "format": "nlbook-compat/1",
        "environment": name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        # the tests run on the working tree: name what in it differs from that commit
        "uncommitted_changes": subprocess.run(
            ["git", "status", "--short", "--untracked-files=no", "--", "nlbook", "tests", "book"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.splitlines(),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "log": str(log.relative_to(ROOT)),
    }
    record["pins"] = [
        ln for ln in (ROOT / ENVS[name]["pins"]).read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    if skip_install:
        record["install"] = "skipped: the environment was built by an earlier run"
    else:
        record.update(install(name, venv, log))
        if record["install"] == "failed":
            return record
    record["versions"] = versions(venv)
    if install_only:
        return record

    py = str(venv / "bin" / "python")
    record["setup_cell_install"] = setup_cell_install(py, log)
    env = child_env()
    marker = "not browser and not gpu" + (" and not slow" if skip_slow else "")
    with tempfile.TemporaryDirectory() as tmp:
        unit_xml, nb_xml = Path(tmp) / "unit.xml", Path(tmp) / "nbval.xml"
        unit = [py, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", marker, *tests, f"--junitxml={unit_xml}"]
        nbval = [py, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval-lax", "--nbval-current-env"]
        nbval += ["--nbval-sanitize-with", "tests/nbval_sanitize.cfg", *CHAPTERS, f"--junitxml={nb_xml}"]
        runs = [("unit_tests", unit, unit_xml)] + ([("checked_cells", nbval, nb_xml)] if chapters else [])
        for key, cmd, xml in runs:
            start = time.time()
            status = run(cmd, log, env)
            shown = [c if c != py else f".venv-compat-{name}/bin/python" for c in cmd if not c.startswith("--junitxml")]
            record[key] = {
                "command": " ".join(f'"{c}"' if " " in c else c for c in shown),
                "exit_status": status,
                "wall_s": round(time.time() - start),
                **junit_summary(xml),
            }
    record["unit_tests"]["deselected"] = "tests marked browser, gpu" + (", slow" if skip_slow else "")
    for key in ("unit_tests", "checked_cells"):
        if record.get(key, {}).get("failures"):
            record[key]["rerun_of_failures"] = rerun_failures(record[key], py, name, log, env)
    record["env"] = {k: v for k, v in env.items() if k in TEST_ENV or k == "OMP_NUM_THREADS"}
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", choices=sorted(ENVS), action="append", help="environment(s); default: all")
    parser.add_argument("--install-only", action="store_true", help="build the environments, run nothing")
    parser.add_argument("--skip-install", action="store_true", help="use the environments as they are")
    parser.add_argument("--skip-slow", action="store_true", help="also deselect tests marked slow")
    parser.add_argument("--tests", nargs="+", default=["tests"], help="test paths for the unit tests (default: tests)")
    parser.add_argument("--no-chapters", action="store_true", help="skip the chapters' checked cells")
    parser.add_argument(
        "--rerun-recorded", action="store_true", help="only rerun the failed unit tests of the recorded JSON"
    )
    args = parser.parse_args()
    failed = False
    for name in args.env or list(ENVS):
        if args.rerun_recorded:
            out = RESULTS / f"compat_{name}.json"
            record = json.loads(out.read_text())
            record = {"format": record.pop("schema", None), **record} if "schema" in record else record
            py = str(ROOT / f".venv-compat-{name}" / "bin" / "python")
            log = ROOT / record["log"]
            now = versions(ROOT / f".venv-compat-{name}")
            if now != record.get("versions"):
                record["versions_at_rerun"] = now  # the environment changed since the full run (e.g. a new pin)
            rerun = rerun_failures(record["unit_tests"], py, name, log, child_env())
            record["unit_tests"]["rerun_of_failures"] = rerun
            if record.get("checked_cells", {}).get("failures"):
                cells = rerun_failures(record["checked_cells"], py, name, log, child_env())
                record["checked_cells"]["rerun_of_failures"] = cells
                print(f"{name} chapters rerun: {cells.get('passed')} passed, {cells.get('failed')} failed", flush=True)
            record["setup_cell_install"] = setup_cell_install(py, log)
            out.write_text(json.dumps(record, indent=2) + "\n")
            print(f"{name} rerun: {rerun.get('passed')} passed, {rerun.get('failed')} failed", flush=True)
            continue
        record = check(name, args.skip_slow, args.install_only, args.skip_install, args.tests, not args.no_chapters)
        print(json.dumps({k: record.get(k) for k in ("environment", "install", "versions")}), flush=True)
        if args.install_only:
            failed |= record.get("install") == "failed"
            continue
        out = RESULTS / f"compat_{name}.json"
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(out)
        for key in ("unit_tests", "checked_cells"):
            if key not in record:
                continue
            part = record[key]
            print(
                f"{name} {key}: {part.get('passed')} passed, {part.get('failed')} failed, {part.get('errors')} errors"
            )
            failed |= bool(part.get("exit_status", 1))
        failed |= record.get("install") == "failed"
        print(f"wrote {out.relative_to(ROOT)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

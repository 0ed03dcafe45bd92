"""``deploy/deps.sh``: the one list of Debian packages, and what it says or does when some are
missing.

The script runs with a PATH of its own: a folder holding only the commands it may use (bash and
a few core utilities), a stand-in ``id`` that says which user it runs as, and a stand-in
``apt-get`` that records its arguments. So every package counts as missing, whatever this
machine has, and nothing is installed for real.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPS = ROOT / "deploy" / "deps.sh"
TEST_PACKAGES = [
    "gcc",
    "python3.11-dev",
    "python3.11-venv",
    "openjdk-17-jre-headless",
    "maven",
    "prometheus",
    "prometheus-alertmanager",
    "chromium",
    "chromium-driver",
    "openssl",
]


def _bin(tmp_path: Path, uid: int) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "cat", "env", "mktemp", "rm"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "id").write_text(f"#!{shutil.which('bash')}\necho {uid}\n")
    log = tmp_path / "apt.log"
    (bin_dir / "apt-get").write_text(f'#!{shutil.which("bash")}\necho "$*" >> {log}\n')
    for script in ("id", "apt-get"):
        (bin_dir / script).chmod(0o755)
    return bin_dir


def _deps(tmp_path: Path, uid: int, *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = _bin(tmp_path, uid)
    # PY names an interpreter that is not there, so headers and venv support count as missing.
    env = {"PATH": str(bin_dir), "PY": str(tmp_path / "no-python")}
    return subprocess.run(
        [str(bin_dir / "bash"), str(DEPS), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_not_root_prints_the_exact_command_and_installs_nothing(tmp_path: Path) -> None:
    out = _deps(tmp_path, 1000, "test")
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines == [
        "deps: make test needs Debian packages that are missing; run: sudo apt-get install -y "
        + " ".join(TEST_PACKAGES)
    ]
    assert not (tmp_path / "apt.log").exists()


def test_root_updates_once_then_installs_exactly_the_missing_packages(tmp_path: Path) -> None:
    out = _deps(tmp_path, 0, "demo")
    assert out.returncode == 0, out.stderr
    demo = [
        "gcc",
        "python3.11-dev",
        "python3.11-venv",
        "openjdk-17-jre-headless",
        "maven",
        "prometheus-alertmanager",
    ]
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        "update -qq",
        "install -y -qq --no-install-recommends " + " ".join(demo),
    ]
    said = out.stdout.splitlines()
    assert len(said) == len(demo)
    assert "deps: installing prometheus-alertmanager (needed by make demo)" in said
    assert "deps: installing maven (needed by make kafka)" in said


def test_nothing_missing_does_nothing(tmp_path: Path) -> None:
    bin_dir = _bin(tmp_path, 1000)
    (bin_dir / "gcc").write_text("#!/bin/sh\n")
    (bin_dir / "gcc").chmod(0o755)
    out = subprocess.run(
        [str(bin_dir / "bash"), str(DEPS), "fuzz"],
        env={"PATH": str(bin_dir), "PY": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # This interpreter has its headers only where the machine's set-up put them; the check
    # must agree with sysconfig either way.
    headers = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    if headers:
        assert (out.returncode, out.stderr) == (0, "")
    else:
        assert out.returncode == 1
        assert out.stderr.rstrip().endswith("sudo apt-get install -y python3.11-dev")
    assert not (tmp_path / "apt.log").exists()


@pytest.mark.parametrize("args", [[], ["bogus"]])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    out = _deps(tmp_path, 0, *args)
    assert out.returncode == 2
    assert out.stderr.startswith("deps: ")
    assert not (tmp_path / "apt.log").exists()


def test_list_names_each_package_once() -> None:
    out = subprocess.run(
        ["bash", str(DEPS), "--list", "test", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == TEST_PACKAGES


def test_the_package_list_lives_in_deps_sh_only() -> None:
    """The Makefile and .ci/run reach the packages through deps.sh, and no other script knows
    a package name or runs apt-get."""
    makefile = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash deploy/deps.sh $(@:deps-%=%)" in makefile
    for target in ("demo", "test"):
        rule = re.search(rf"^{target}:(.*)$", makefile, re.MULTILINE)
        assert rule is not None and f"deps-{target}" in rule.group(1).split(), target
    assert re.search(r"^\$\(STAMP\):.*\| deps-install$", makefile, re.MULTILINE)
    assert "bash deploy/deps.sh test" in ci
    scripts = [ROOT / "Makefile", ROOT / ".ci" / "run", *sorted((ROOT / "deploy").rglob("*.sh"))]
    # Package names that are not also the name of a command the scripts run.
    names = {"python3.11-dev", "python3.11-venv", "openjdk-17-jre-headless", "chromium-driver"}
    for script in scripts:
        if script == DEPS:
            continue
        # What the script runs, not what its comments say.
        text = "\n".join(
            line for line in script.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        assert "apt-get" not in text, script
        assert not [name for name in names if re.search(rf"\b{re.escape(name)}\b", text)], script

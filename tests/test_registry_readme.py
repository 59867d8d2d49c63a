"""The README's two commands (light install + run; tests) and .ci/run stay in step, and torch is always pinned."""

from __future__ import annotations

import re
from pathlib import Path

from glimpse.registry import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> tuple[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    install = text.split("## Install and run", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    tests = text.split("## Run the tests", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    return install.strip(), tests.strip()


def test_the_main_command_is_the_light_install():
    install, _ = _commands()
    assert "\n" not in install and "torch" not in install
    assert "pip install -e . &&" in install and "glimpse index" in install and "glimpse search" in install
    assert DEFAULT_MODEL in (ROOT / "README.md").read_text(encoding="utf-8")


def test_ci_installs_and_tests_the_way_the_readme_says():
    install, tests = _commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    steps = [s.strip() for s in install.split("&&") if not s.strip().startswith("glimpse ")]
    assert " && ".join(steps).replace("pip install", "pip install -q") in ci
    # the test command's steps, in order (CI exports HF_HUB_OFFLINE=1 once instead of per step)
    test_steps = [re.sub(r"^HF_HUB_OFFLINE=1 ", "", s.strip()).replace("pip install", "pip install -q")
                  for s in tests.split("&&")]
    assert " && ".join(test_steps) in ci
    assert "export HF_HUB_OFFLINE=1" in ci


def test_torch_is_pinned_wherever_it_is_installed():
    for text in ((ROOT / "README.md").read_text(encoding="utf-8"), (ROOT / ".ci" / "run").read_text(encoding="utf-8")):
        for match in re.finditer(r"pip install[^&\n]*\btorch\b[^&\n]*", text):
            assert "torch==2.13.0" in match.group(0), match.group(0)

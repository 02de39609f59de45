"""The README and docs/ promise only what exists: links resolve, every `-S key=value` names a param, every stage a
command or a name refers to is in dvc.yaml, and the README's headline numbers are the report's."""

import re
import shlex
import subprocess
import sys

import pytest

from caltech_transfer.core.params import schema_key
from conftest import PROJECT

PAGES = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SETTING = re.compile(r"-S\s+'?([\w.]+)=")
STAGE_NAME = re.compile(r"`((?:train|curve|evaluate)[\w]*@?[\w<>*]*)`")


def code_lines(text):
    """The commands of the page's fenced code blocks, a line continued with a backslash joined to the next."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]


def slug(heading):
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.fixture(scope="module")
def stages():
    listed = subprocess.run(
        [sys.executable, "-m", "dvc", "stage", "list", "--all", "--name-only"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return set(listed) | {name.split("@")[0] for name in listed}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    text = page.read_text()
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target} does not exist"
        if anchor and file.suffix == ".md":
            headings = [slug(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)]
            assert anchor in headings, f"{page.name}: no heading #{anchor} in {file.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_setting_and_stage_named_exists(page, stages):
    text = page.read_text()
    for key in SETTING.findall(text):
        assert schema_key(key), f"{page.name}: -S {key}=... is not a param"
    for line in code_lines(text):
        command = line.split("#")[0].split("&&")[-1]
        words = shlex.split(command) if "dvc" in command else []
        if words[:2] == ["dvc", "repro"] or words[:3] == ["dvc", "exp", "run"]:
            targets, skip = [], False
            for word in words[2 if words[1] == "repro" else 3 :]:
                if skip or word.startswith("-"):
                    skip = word in ("-S", "--set-param", "-n", "--name", "-j")
                    continue
                targets.append(word)
            for target in targets:
                assert target in stages, f"{page.name}: `{line.strip()}` runs {target}, which dvc.yaml does not have"
    for name in STAGE_NAME.findall(text):
        base, _, item = name.partition("@")
        assert (name if item and not re.search(r"[<>*]", item) else base) in stages, f"{page.name}: no stage {name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_plain_words(page):
    """No internal shorthand a newcomer cannot know."""
    text = page.read_text().lower()
    for phrase in (r"seeds' way", r"seed projects?", r"leased?", r"project's target", r"its own target", r"gb target"):
        assert not re.search(rf"\b{phrase}\b", text), f"{page.name} says {phrase!r}"


def test_the_readme_is_short_and_its_headline_is_the_reports():
    lines = (PROJECT / "README.md").read_text().splitlines()
    assert len(lines) <= 220
    table = [line for line in lines[:40] if re.match(r"\| (feature extraction|fine-tuning|from scratch)", line)]
    assert len(table) == 3, "the headline table belongs in the README's first 40 lines"
    report = (PROJECT / "report.md").read_text()
    for row in table:
        numbers = re.findall(r"\d\.\d{4}(?: ± \d\.\d{4})?", row)
        assert len(numbers) == 2, row  # top-1 and mean per-class
        for number in numbers:
            assert number in report, f"README's {number} is not in report.md"

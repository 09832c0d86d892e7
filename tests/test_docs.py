"""The documentation names only what exists: every relative link in README.md, CHANGELOG.md
and docs/*.md resolves to a file or folder, and every repository path the docs name in code
(`yolact_fast/segment.py`, `bash scripts/install.sh`, ...) exists in the checkout."""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = sorted(
    ["README.md", "CHANGELOG.md"] + [os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))]
)

# Top-level folders whose paths the docs name; a path is checked when it starts with one.
TOP_FOLDERS = ("yolact_fast", "csrc", "scripts", "tests", "benchmarks", "tools", "docs", ".ci")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./*+-]*)" % "|".join(re.escape(t) for t in TOP_FOLDERS))


def broken_links(doc: str, text: str, root: str = ROOT) -> list:
    """Relative link targets in ``text`` (the file ``doc``, relative to ``root``) that do not
    exist. Web links and in-page anchors are not checked."""
    base = os.path.dirname(os.path.join(root, doc))
    broken = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not os.path.exists(os.path.normpath(os.path.join(base, path))):
            broken.append(target)
    return broken


def named_paths(text: str) -> list:
    """Repository paths named in code spans and code blocks, relative to the repository root."""
    code = " ".join(FENCE.findall(text) + CODE_SPAN.findall(FENCE.sub("", text)))
    return [p.rstrip(".") for p in PATH.findall(code) if "..." not in p]


def missing_paths(text: str, root: str = ROOT) -> list:
    """Named paths that do not exist. A pattern (``yolact_fast/_C*.so``, a build output) needs
    its folder to exist."""
    missing = []
    for path in named_paths(text):
        full = os.path.join(root, path)
        if any(c in path for c in "*?["):
            exists = bool(glob.glob(full)) or os.path.isdir(os.path.dirname(full))
        else:
            exists = os.path.exists(full)
        if not exists:
            missing.append(path)
    return missing


def read(doc: str) -> str:
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        return f.read()


def test_docs_exist():
    for doc in ("README.md", "CHANGELOG.md", "LICENSE", "CITATION.cff", "docs/README.md"):
        assert os.path.isfile(os.path.join(ROOT, doc)), doc


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc):
    assert broken_links(doc, read(doc)) == []


@pytest.mark.parametrize("doc", DOCS)
def test_named_paths_exist(doc):
    assert missing_paths(read(doc)) == []


def test_every_docs_page_is_linked_from_the_index():
    index = read("docs/README.md")
    pages = {os.path.basename(p) for p in DOCS if p.startswith("docs" + os.sep) or p.startswith("docs/")}
    assert {p for p in pages if p != "README.md" and "(%s)" % p not in index} == set()


def test_the_checks_find_what_is_missing():
    text = (
        "See [install](docs/install.md), [gone](docs/no_such_page.md#part), [web](https://x.org), "
        "[here](#speed).\n`yolact_fast/no_such_module.py` and `scripts/install.sh`, "
        "`yolact_fast/_C*.so`, `csrc/nowhere/*.h`.\n```bash\nbash scripts/no_such_script.sh\n```\n"
    )
    assert broken_links("README.md", text) == ["docs/no_such_page.md#part"]
    assert broken_links("docs/x.md", "[up](../README.md) [same](install.md) [bad](README.md/x)") == ["README.md/x"]
    assert missing_paths(text) == ["scripts/no_such_script.sh", "yolact_fast/no_such_module.py", "csrc/nowhere/*.h"]


def test_readme_keeps_the_two_set_up_commands_and_its_length():
    readme = read("README.md")
    assert "bash scripts/install.sh && .venv/bin/yolact-fast demo --out out" in readme
    assert "bash scripts/install.sh && .venv/bin/python -m pytest -q tests" in readme
    assert len(readme.splitlines()) <= 250

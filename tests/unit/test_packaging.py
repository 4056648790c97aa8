"""The product does not depend on the local stand-ins (the `dev` extra: noida-db, chDB, scripts/)."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAND_INS = ("noida_db", "chdb", "scripts")


def test_the_product_imports_none_of_the_stand_ins() -> None:
    probe = (
        "import sys, memstream.cli, memstream.stack, api.app, projections.writer, streams.runtime.stage; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {STAND_INS!r}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT / "docs", capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


def test_the_stand_ins_are_only_in_the_dev_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = ("noida-db", "chdb", "[chdb]")
    assert not [d for d in project["dependencies"] if any(n in d for n in names)]
    assert {d.split("==")[0] for d in project["optional-dependencies"]["dev"]} >= {"noida-db", "chdb-core"}


def test_the_image_copies_no_stand_ins() -> None:
    lines = (ROOT / "docker" / "Dockerfile").read_text().splitlines()
    copied = [line.split()[1:-1] for line in lines if line.startswith("COPY")]
    assert copied and not [c for c in copied if "scripts" in c or "tests" in c], copied
    assert "pip install --no-cache-dir ." in lines[[line.startswith("RUN") for line in lines].index(True)]

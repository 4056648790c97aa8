"""The README stays true: its settings table is the settings class, and it links only inside the repo."""

import re
from pathlib import Path

from memstream.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_settings_table_is_the_settings_class() -> None:
    table = dict(re.findall(r"^\| `MEMSTREAM_(\w+)` \| `([^`]*)` \|", README, re.M))
    expected = {
        name.upper(): (f.default if isinstance(f.default, str) else repr(f.default))
        for name, f in Settings.model_fields.items()
    }
    assert table == expected


def test_links_stay_in_the_repository() -> None:
    root = Path(__file__).resolve().parents[2]
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        assert not target.startswith(("..", "/")), target
        if not target.startswith("http"):
            assert (root / target).exists(), target

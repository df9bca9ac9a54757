"""docs/configuration.md is generated from the settings classes; the check catches staleness."""

from __future__ import annotations

import base64
from pathlib import Path

from clearway.shared.settings import is_secret
from clearway.shared.settings_doc import main, registered, render

ROOT = Path(__file__).resolve().parents[2]


def test_the_check_fails_on_a_stale_file_and_passes_once_written(tmp_path, capsys):
    doc = tmp_path / "configuration.md"
    doc.write_text(render(registered()).replace("CLEARWAY_TRANSFER_PORT", "CLEARWAY_PORT"))
    assert main(["check", "--output", str(doc)]) == 1
    err = capsys.readouterr().err
    assert "is stale" in err and "CLEARWAY_TRANSFER_PORT" in err
    assert main(["check", "--output", str(tmp_path / "missing.md")]) == 1
    assert main(["write", "--output", str(doc)]) == 0
    assert main(["check", "--output", str(doc)]) == 0


def test_the_committed_document_is_current():
    assert main(["check", "--output", str(ROOT / "docs" / "configuration.md")]) == 0


def test_every_variable_is_listed_and_no_secret_value_is():
    text = render(registered())
    for cls in registered():
        for name, var, field in cls.env_fields():
            assert f"`{var}`" in text
            if is_secret(field):
                secret = getattr(cls(), name)
                if secret is None:  # no default at all: nothing to leak
                    continue
                value = secret.get_secret_value()
                raw = value.decode("latin-1") if isinstance(value, bytes) else value
                assert raw not in text, var
                if isinstance(value, bytes):
                    assert base64.b64encode(value).decode() not in text, var
    assert "development default (secret; required in production)" in text
    assert "unset (secret; required in production)" in text

"""serve: what `serve` says at start-up, before it runs nginx and the model server."""

import logging
import tempfile

from dogbreed.serve import main


def test_without_a_writable_temporary_directory_serve_says_to_mount_one(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))  # as on a read-only root without a tmpfs
    with caplog.at_level(logging.ERROR, logger="dogbreed.serve"):
        assert main([]) == 1
    [line] = caplog.messages
    assert line.startswith("cannot start the model server: no writable temporary directory")
    assert str(tmp_path / "missing") in line
    assert line.endswith("mount one, e.g. docker run --tmpfs /tmp, or set TMPDIR to a writable one")

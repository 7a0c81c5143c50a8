"""The Dify plugin confines local store paths to its data directory: its tests keep their stores under
pytest's temporary directories, so that directory is the data root here."""

from __future__ import annotations

import pytest

from memdock.dify_adapter.plugin_logic.backend import DATA_ROOT_ENV


@pytest.fixture(autouse=True)
def plugin_data_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test's `tmp_path` lies under the plugin's data root."""
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path_factory.getbasetemp()))

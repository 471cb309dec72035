"""Fixtures for the service: one app per test module, on FastAPI's in-process test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service extra is not installed")

from fastapi.testclient import TestClient

from netboard.service.app import Settings, create_app


@pytest.fixture(scope="module")
def app_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    folder = tmp_path_factory.mktemp("service")
    # Without a trust file, fhirServer fetches go only to allowlisted servers: the loopback
    # stub FHIR servers of the tests listen on 127.0.0.1, one port per test.
    return Settings(data_dir=str(folder))


@pytest.fixture(scope="module")
def client(app_settings: Settings) -> Iterator[TestClient]:
    # Server errors become 500 answers, as a real server gives them, not test exceptions.
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as c:
        yield c


def feedback_db(settings: Settings) -> Path:
    return Path(settings.file("feedback.sqlite3"))

"""HubSettings: defaults, HCP_HUB_* variables, the derived public URL, the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.config import HubSettings
from hub.server import add_arguments, settings_from_args
from hub.store import PostgresStore, SQLiteStore, store_for


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("DB_PATH", "DB_URL", "ADMIN_TOKEN", "HOST", "PORT", "PUBLIC_URL", "MAX_ITEMS",
                 "MAX_BODY_BYTES"):
        monkeypatch.delenv(f"HCP_HUB_{name}", raising=False)


def test_defaults():
    s = HubSettings()
    assert (s.db_path, s.host, s.port, s.max_items, s.max_body_bytes) == \
        (Path("var/hub.sqlite3"), "127.0.0.1", 8700, 1000, 4 * 1024 * 1024)
    assert s.public_url == "http://127.0.0.1:8700"
    assert not s.admin_configured


def test_environment_variables(monkeypatch):
    monkeypatch.setenv("HCP_HUB_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("HCP_HUB_PORT", "9000")
    monkeypatch.setenv("HCP_HUB_HOST", "::1")
    monkeypatch.setenv("HCP_HUB_MAX_ITEMS", "10")
    s = HubSettings()
    assert s.admin_configured and s.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)
    assert (s.port, s.max_items, s.public_url) == (9000, 10, "http://[::1]:9000")


def test_an_explicit_public_url_wins():
    assert HubSettings(public_url="https://hub.example/").public_url == "https://hub.example"


@pytest.mark.parametrize("field, value", [("port", 70000), ("max_items", 0), ("max_body_bytes", 10)])
def test_out_of_range_values_are_refused(field, value):
    with pytest.raises(ValidationError):
        HubSettings(**{field: value})


def test_command_line_overrides_environment(monkeypatch):
    monkeypatch.setenv("HCP_HUB_ADMIN_TOKEN", "from-env")
    monkeypatch.setenv("HCP_HUB_PORT", "9000")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    s = settings_from_args(parser.parse_args(["--db", "x.sqlite3", "--port", "9100"]))
    assert (s.db_path, s.port, s.admin_token.get_secret_value()) == (Path("x.sqlite3"), 9100, "from-env")
    s = settings_from_args(parser.parse_args(["--admin-token", "from-args"]))
    assert (s.port, s.admin_token.get_secret_value()) == (9000, "from-args")


def parse(*argv: str) -> HubSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from_args(parser.parse_args(list(argv)))


def test_a_postgresql_url_picks_postgresql_and_stays_secret():
    url = "postgresql://hub:pw@db.example:5432/hub?sslmode=require"
    s = HubSettings(db_url=url)
    assert s.postgres_url == url and isinstance(store_for(s), PostgresStore)
    assert "pw" not in repr(s)
    assert s.database_label == "postgresql://hub:***@db.example:5432/hub?sslmode=require"
    assert HubSettings(db_url="postgres:///hub?password=pw&host=/run/pg").database_label == \
        "postgres:///hub?password=***&host=%2Frun%2Fpg"
    assert HubSettings(db_url="postgresql://db/hub").database_label == "postgresql://db/hub"
    sqlite = HubSettings(db_path=Path("x.sqlite3"))
    assert sqlite.postgres_url is None and isinstance(store_for(sqlite), SQLiteStore)
    assert sqlite.database_label == "x.sqlite3"


@pytest.mark.parametrize("url", ["sqlite:///x.sqlite3", "postgress://hub:s3cret@db/hub",
                                 "host=db dbname=hub password=s3cret", "mysql://db/hub"])
def test_a_db_url_of_another_kind_is_refused_without_repeating_it(url):
    with pytest.raises(ValidationError, match="postgresql://") as refused:
        HubSettings(db_url=url)
    assert "s3cret" not in str(refused.value) and url not in str(refused.value)


def test_the_database_from_the_environment_and_the_command_line(monkeypatch):
    monkeypatch.setenv("HCP_HUB_DB_URL", "postgresql://env/hub")
    assert HubSettings().postgres_url == "postgresql://env/hub"
    assert parse().postgres_url == "postgresql://env/hub"
    assert parse("--db-url", "postgresql://args/hub").postgres_url == "postgresql://args/hub"
    given_file = parse("--db", "x.sqlite3")  # an explicit SQLite file wins over the variable
    assert (given_file.postgres_url, given_file.db_path) == (None, Path("x.sqlite3"))
    with pytest.raises(SystemExit):
        parse("--db", "x.sqlite3", "--db-url", "postgresql://args/hub")
    with pytest.raises(ValidationError):
        parse("--db-url", "sqlite:///x")

"""The settings file (TOML) and its rank: command-line flags > SEMSEARCH_* variables > the file >
defaults, through the CLI's own parser and `settings_from`, as `semsearch serve` builds them; the
store settings' checks; and the hand-over of resolved settings to `serve --workers` processes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from semsearch.cli import serve
from semsearch.cli.arguments import settings_from
from semsearch.cli.main import build_parser, main
from semsearch.service.config_file import ConfigFileError
from semsearch.service.settings import WORKER_ENV, Settings, worker_environment, worker_settings

FILE = """\
# every level below sets port; each lower one sets one more setting
port = 7001
max_batch_tokens = 4096
max_wait_ms = 2.5
log_format = "json"
index_dir = "~/from-the-file"
"""


@pytest.fixture(autouse=True)
def _no_semsearch_variables(monkeypatch):
    monkeypatch.delenv("SEMSEARCH_CONFIG", raising=False)
    for name in ("PORT", "MAX_BATCH_TOKENS", "MAX_WAIT_MS", "LOG_FORMAT", "INDEX_DIR", "WORKERS"):
        monkeypatch.delenv(f"SEMSEARCH_{name}", raising=False)
    for name in ("STORE", "QDRANT_URL", "QDRANT_API_KEY", "QDRANT_COLLECTION"):
        monkeypatch.delenv(f"SEMSEARCH_{name}", raising=False)
    monkeypatch.delenv(WORKER_ENV, raising=False)


def serve_settings(*argv: str) -> Settings:
    args = build_parser().parse_args(["serve", *argv])
    return settings_from(args, *serve._FLAGS)


@pytest.mark.parametrize("given_by", ["flag", "variable"])
def test_flags_beat_variables_beat_the_file_beats_defaults(tmp_path, monkeypatch, given_by):
    path = tmp_path / "semsearch.toml"
    path.write_text(FILE)
    monkeypatch.setenv("SEMSEARCH_PORT", "7002")
    monkeypatch.setenv("SEMSEARCH_MAX_BATCH_TOKENS", "8192")
    if given_by == "flag":
        settings = serve_settings("--config", str(path), "--port", "7003")
    else:
        monkeypatch.setenv("SEMSEARCH_CONFIG", str(path))
        settings = serve_settings("--port", "7003")
    assert settings.port == 7003  # flag over variable over file
    assert settings.max_batch_tokens == 8192  # variable over file
    assert settings.max_wait_ms == 2.5 and settings.log_format == "json"  # file over default
    assert settings.index_dir == Path.home() / "from-the-file"  # `~` expanded
    assert settings.max_batch_requests == Settings.model_fields["max_batch_requests"].default
    assert settings.config == path


def test_the_flag_names_the_file_over_the_variable(tmp_path, monkeypatch):
    (tmp_path / "a.toml").write_text("port = 7101\n")
    (tmp_path / "b.toml").write_text("port = 7102\n")
    monkeypatch.setenv("SEMSEARCH_CONFIG", str(tmp_path / "a.toml"))
    assert serve_settings().port == 7101
    assert serve_settings("--config", str(tmp_path / "b.toml")).port == 7102


def test_without_a_file_nothing_changes(monkeypatch):
    monkeypatch.setenv("SEMSEARCH_CONFIG", "")  # empty counts as unset
    assert Settings().port == 8000 and Settings().config is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("prot = 1\n", ["unknown setting `prot`", "did you mean `port`"]),
        ("[server]\nport = 1\n", ["unknown setting `server`"]),
        ("SEMSEARCH_PORT = 1\n", ["unknown setting `SEMSEARCH_PORT`", "lower case"]),
        ('config = "other.toml"\n', ["`config` cannot name another file"]),
        ("max_wait_ms = -1\n", ["`max_wait_ms`", "greater than or equal to 0"]),
        ('api_key = "two words"\n', ["`api_key`", "visible ASCII"]),
        ('log_format = "yaml"\n', ["`log_format`", "'text' or 'json'"]),
    ],
)
def test_a_bad_file_names_the_file_and_the_key(tmp_path, text, words):
    path = tmp_path / "semsearch.toml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as raised:
        Settings(config=path)
    message = str(raised.value)
    assert message.startswith(f"config file {path}")
    for word in words:
        assert word in message, (word, message)


def test_a_bad_value_in_the_environment_is_not_blamed_on_the_file(tmp_path, monkeypatch):
    path = tmp_path / "semsearch.toml"
    path.write_text("port = 7001\n")
    monkeypatch.setenv("SEMSEARCH_PORT", "0")
    with pytest.raises(ValueError, match="port") as raised:
        Settings(config=path)
    assert not isinstance(raised.value, ConfigFileError)


def test_a_missing_file_is_an_error_not_an_empty_file(tmp_path):
    with pytest.raises(ConfigFileError, match="does not exist"):
        Settings(config=tmp_path / "nope.toml")
    with pytest.raises(ConfigFileError, match="does not exist or is not a file"):
        Settings(config=tmp_path)


def test_the_example_file_loads_and_names_only_settings():
    example = Path(__file__).resolve().parents[2] / "semsearch.example.toml"
    settings = Settings(config=example)
    assert settings.log_format == "json" and settings.port == 8000
    commented = re.findall(r"^# (\w+) = ", example.read_text(), re.M)
    assert commented and set(commented) <= set(Settings.model_fields) - {"config"}


# --- the store ----------------------------------------------------------------------------------

KEY = "qdrant-key-0123"


def test_store_qdrant_needs_an_http_url_and_says_which_variable(monkeypatch, capsys):
    assert Settings().store == "local"
    with pytest.raises(ValidationError, match="qdrant_url") as raised:
        Settings(store="qdrant")
    assert "SEMSEARCH_STORE=qdrant needs the server's URL" in str(raised.value)
    for bad in ("qdrant:6333", "ftp://qdrant:6333", "http://", "http://qdrant:99999"):
        with pytest.raises(ValidationError, match="qdrant_url"):
            Settings(store="qdrant", qdrant_url=bad)
    settings = Settings(store="qdrant", qdrant_url="https://q.example:6333/")
    assert settings.qdrant_url == "https://q.example:6333"
    assert settings.qdrant_collection == "semsearch"
    assert settings.qdrant_shard_number == settings.qdrant_replication_factor == 1
    with pytest.raises(ValidationError, match="qdrant_collection"):
        Settings(qdrant_collection="../other")
    # `semsearch serve` refuses before it starts anything: a usage error naming the variable.
    monkeypatch.setenv("SEMSEARCH_STORE", "qdrant")
    assert main(["serve"]) == 2
    assert "SEMSEARCH_QDRANT_URL" in capsys.readouterr().err


def test_the_qdrant_key_is_never_shown(monkeypatch):
    settings = Settings(store="qdrant", qdrant_url="http://q:6333", qdrant_api_key=KEY)
    assert settings.qdrant_api_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in str(settings)
    assert KEY not in settings.model_dump_json()
    with pytest.raises(ValidationError) as raised:  # a bad key is refused without its value
        Settings(qdrant_api_key=f"{KEY} and more")
    assert "SEMSEARCH_QDRANT_API_KEY must be visible ASCII" in str(raised.value)
    assert KEY not in str(raised.value)
    monkeypatch.setenv("SEMSEARCH_QDRANT_API_KEY", "")  # empty counts as unset
    assert Settings().qdrant_api_key is None


def test_a_rule_across_settings_is_checked_with_every_source(tmp_path, monkeypatch):
    """The file names the store, the environment its URL: neither alone is wrong."""
    path = tmp_path / "semsearch.toml"
    path.write_text('store = "qdrant"\nqdrant_shard_number = 3\n')
    monkeypatch.setenv("SEMSEARCH_QDRANT_URL", "http://qdrant:6333")
    settings = Settings(config=path)
    assert settings.store == "qdrant" and settings.qdrant_shard_number == 3
    monkeypatch.delenv("SEMSEARCH_QDRANT_URL")
    with pytest.raises(ValidationError, match="needs the server's URL"):
        Settings(config=path)
    path.write_text('store = "qdrant"\nqdrant_url = "qdrant:6333"\n')
    with pytest.raises(ConfigFileError, match="`qdrant_url`: Value error, expected an http"):
        Settings(config=path)


# --- serve --workers: the settings each worker process builds its app from -----------------------


def test_workers_get_the_settings_the_command_resolved(tmp_path, monkeypatch):
    path = tmp_path / "semsearch.toml"
    path.write_text("max_batch_tokens = 4096\n")
    monkeypatch.setenv("SEMSEARCH_MAX_WAIT_MS", "2.5")
    monkeypatch.setenv("SEMSEARCH_QDRANT_API_KEY", KEY)
    resolved = serve_settings("--config", str(path), "--workers", "3", "--port", "7003")
    assert resolved.workers == 3
    for name, value in worker_environment(resolved, "DEBUG").items():
        monkeypatch.setenv(name, value)
    # What the worker process sees later is not read again: the hand-over alone decides.
    monkeypatch.setenv("SEMSEARCH_PORT", "7999")
    path.unlink()
    settings, log_level = worker_settings()
    assert settings == resolved and log_level == "DEBUG"
    assert settings.port == 7003 and settings.max_batch_tokens == 4096
    assert settings.max_wait_ms == 2.5 and settings.qdrant_api_key.get_secret_value() == KEY


def test_a_worker_without_the_hand_over_says_what_it_is():
    with pytest.raises(RuntimeError, match="serve --workers N"):
        worker_settings()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "0"])

"""Where ML Metadata is: a sqlite path or a mysql:// server, its password never in the URI."""

import pytest

from pipeline import metadata_connection
from pipeline.config import PipelineConfig


def test_a_path_is_a_sqlite_file_and_a_mysql_uri_a_server():
    assert metadata_connection.metadata_server("artifacts/metadata.sqlite") is None
    sqlite = metadata_connection.connection_config("artifacts/metadata.sqlite")
    assert sqlite.sqlite.filename_uri == "artifacts/metadata.sqlite"

    server = metadata_connection.metadata_server("mysql://ml%40team@db.internal/mlmd")
    assert (server.user, server.host, server.port, server.database) == (
        "ml@team",
        "db.internal",
        metadata_connection.DEFAULT_PORT,
        "mlmd",
    )
    assert str(metadata_connection.metadata_server("mysql://u@10.0.0.2:3310/mlmd")) == (
        "10.0.0.2:3310"
    )


@pytest.mark.parametrize(
    "address, message",
    [
        ("mysql://u:s3cret@h:3306/mlmd", "mysql://u:***@h:3306/mlmd: no password in"),
        ("mysql://u:@h:3306/mlmd", "mysql://u:***@h:3306/mlmd: no password in"),
        ("mysql://u@h:3306/", "expected mysql://USER@HOST[:PORT]/DATABASE"),
        ("mysql://h:3306/mlmd", "expected mysql://USER@HOST[:PORT]/DATABASE"),
        ("mysql://u@h:port/mlmd", "expected mysql://USER@HOST[:PORT]/DATABASE"),
    ],
)
def test_a_malformed_server_address_is_refused_and_a_password_never_repeated(address, message):
    with pytest.raises(metadata_connection.MetadataAddressError) as refused:
        metadata_connection.metadata_server(address)
    assert message in str(refused.value) and "s3cret" not in str(refused.value)


def test_the_password_comes_from_the_variable_then_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(metadata_connection.PASSWORD_VARIABLE, raising=False)
    monkeypatch.delenv(metadata_connection.PASSWORD_FILE_VARIABLE, raising=False)
    assert metadata_connection.password() == ""
    (tmp_path / "password").write_text("from-file\n")
    metadata_connection.use_password_file(str(tmp_path / "password"))
    assert metadata_connection.password() == "from-file"
    config = metadata_connection.connection_config("mysql://u@h/mlmd")
    assert (config.mysql.user, config.mysql.password) == ("u", "from-file")
    monkeypatch.setenv(metadata_connection.PASSWORD_VARIABLE, "from-variable")
    assert metadata_connection.password() == "from-variable"

    monkeypatch.delenv(metadata_connection.PASSWORD_VARIABLE)
    monkeypatch.setenv(metadata_connection.PASSWORD_FILE_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(metadata_connection.MetadataStoreError, match="cannot read"):
        metadata_connection.password()


def test_the_config_takes_only_a_server_uri_and_keeps_the_run_directory_local():
    config = PipelineConfig(metadata_uri="mysql://u@h/mlmd")
    assert config.metadata_address == "mysql://u@h/mlmd"
    assert config.run_dir == PipelineConfig().run_dir
    assert PipelineConfig().metadata_address == PipelineConfig().metadata_path
    with pytest.raises(ValueError, match="a sqlite file is metadata_path"):
        PipelineConfig(metadata_uri="artifacts/metadata.sqlite")

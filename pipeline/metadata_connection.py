"""Where ML Metadata lives and how every command connects to it: a sqlite file (the default, one
machine) or a MySQL/MariaDB server (`--metadata-uri mysql://USER@HOST[:PORT]/DATABASE`, what
Kubeflow and a multi-host Airflow use). The one place that builds a connection config.

The password never travels in the URI (it would show in process lists, logs and
--print-config): it comes from $AGNEWS_METADATA_PASSWORD, or from the file that
$AGNEWS_METADATA_PASSWORD_FILE (--metadata-password-file) names. Imports nothing heavy: the CLI
reads addresses before it imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse

SERVER_SCHEME = "mysql"
DEFAULT_PORT = 3306
PASSWORD_VARIABLE = "AGNEWS_METADATA_PASSWORD"
PASSWORD_FILE_VARIABLE = "AGNEWS_METADATA_PASSWORD_FILE"
# A server that does not answer within this is reported as unreachable.
CONNECT_TIMEOUT_S = 10
# MySQL's error codes for a server that cannot be reached, and for a refused user.
_UNREACHABLE_CODES = (2003, 2005, 2006, 2013)


class MetadataStoreError(RuntimeError):
    """The store's server cannot be reached or refuses the user, or its address is malformed: a
    one-line message for the user, naming the server."""


class MetadataAddressError(MetadataStoreError, ValueError):
    """A malformed --metadata-uri (a ValueError, as every other bad setting of the config)."""


@dataclasses.dataclass(frozen=True)
class MetadataServer:
    user: str
    host: str
    port: int
    database: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def uri(self) -> str:
        return f"{SERVER_SCHEME}://{self.user}@{self.host}:{self.port}/{self.database}"


def is_server(address: str) -> bool:
    return address.startswith(f"{SERVER_SCHEME}://")


def metadata_server(address: str) -> MetadataServer | None:
    """The server that a mysql:// address names; None for a sqlite file's path."""
    if not is_server(address):
        return None
    parsed = urllib.parse.urlsplit(address)
    if parsed.password is not None:
        masked = address.replace(f":{parsed.password}@", ":***@", 1)
        raise MetadataAddressError(
            f"{masked}: no password in --metadata-uri (it would "
            f"show in process lists and logs): set ${PASSWORD_VARIABLE} or give "
            "--metadata-password-file"
        )
    database = parsed.path.removeprefix("/")
    try:
        port = parsed.port or DEFAULT_PORT
    except ValueError:
        port = 0
    if not (parsed.username and parsed.hostname and database and port) or "/" in database:
        raise MetadataAddressError(
            f"{address}: expected {SERVER_SCHEME}://USER@HOST[:PORT]/DATABASE"
        )
    return MetadataServer(urllib.parse.unquote(parsed.username), parsed.hostname, port, database)


def required_server(uri: str) -> MetadataServer:
    """The server of a --metadata-uri (metadata_uri), which must name one."""
    server = metadata_server(uri)
    if server is None:
        raise MetadataAddressError(
            f"--metadata-uri {uri}: expected {SERVER_SCHEME}://USER@HOST[:PORT]/DATABASE (a "
            "sqlite file is metadata_path, --metadata-path)"
        )
    return server


def password() -> str:
    """The server password: $AGNEWS_METADATA_PASSWORD, else the first line of the file that
    $AGNEWS_METADATA_PASSWORD_FILE names, else none."""
    if PASSWORD_VARIABLE in os.environ:
        return os.environ[PASSWORD_VARIABLE]
    path = os.environ.get(PASSWORD_FILE_VARIABLE)
    if not path:
        return ""
    try:
        with open(path) as handle:
            return handle.readline().rstrip("\r\n")
    except OSError as error:
        raise MetadataStoreError(
            f"cannot read the ML Metadata password file {path}: {error.strerror}"
        ) from None


def use_password_file(path: str | None) -> None:
    """--metadata-password-file: every connection of this process and of the processes it starts
    reads the password from `path` (unless $AGNEWS_METADATA_PASSWORD is set)."""
    if path:
        os.environ[PASSWORD_FILE_VARIABLE] = os.path.abspath(path)


def connection_config(address: str):
    """ml-metadata's ConnectionConfig for a sqlite path (as TFX's
    `sqlite_metadata_connection_config`) or a mysql:// address."""
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    server = metadata_server(address)
    if server is None:
        config.sqlite.filename_uri = address
        config.sqlite.connection_mode = (
            metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        )
        return config
    config.mysql.host, config.mysql.port = server.host, server.port
    config.mysql.database, config.mysql.user = server.database, server.user
    config.mysql.password = password()
    return config


def connect(server: MetadataServer):
    """A PyMySQL connection to the server (autocommit), or MetadataStoreError in one line:
    ml-metadata's own client reports neither which server failed nor why."""
    import pymysql

    try:
        return pymysql.connect(
            host=server.host,
            port=server.port,
            user=server.user,
            password=password(),
            database=server.database,
            connect_timeout=CONNECT_TIMEOUT_S,
            autocommit=True,
        )
    except pymysql.err.MySQLError as error:
        code, message = (error.args + ("",))[:2] if error.args else (0, str(error))
        problem = "is unreachable" if code in _UNREACHABLE_CODES else "refused the connection"
        raise MetadataStoreError(
            f"the ML Metadata server {server} {problem} (user {server.user}, database "
            f"{server.database}): {message}"
        ) from None


def check(address: str) -> None:
    """Raises MetadataStoreError unless the store at `address` can be opened: a server answers
    and takes the user (a sqlite file needs nothing)."""
    server = metadata_server(address)
    if server is not None:
        connect(server).close()

"""agnews.registry on a real ML Metadata store holding a Pusher's pushes as TFX records them:
aliases replayed from the recorded changes, the ModelServerConfig it writes, and `agnews models`."""

import json

import pytest

from agnews import cli, registry
from agnews.exit_codes import ExitCode
from agnews.serving import model_config
from agnews.versions import prune_versions
from tests.helpers.metadata import record_push


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "metadata.sqlite", tmp_path / "serving" / "agnews"


def _registry(paths) -> registry.Registry:
    metadata_path, serving_dir = paths
    return registry.model_registry(str(metadata_path), "agnews", str(serving_dir))


def _pushed_one_by_one(paths, *versions: int) -> registry.Registry:
    """The registry after each of `versions` was pushed and registered, as daily runs do."""
    book = _registry(paths)
    for version in versions:
        record_push(*paths, version)
        book.sync()
    return book


def _served(paths) -> tuple[tuple[int, ...], dict[str, int]]:
    """(versions, labels) of the config file the registry wrote."""
    (config,) = model_config.read_config_file(model_config.registry_config_path(str(paths[1])))
    assert config.policy == "specific" and config.base_path == str(paths[1].resolve())
    return config.versions, dict(config.labels)


def test_the_first_push_is_stable_and_each_later_one_canary(paths):
    book = _registry(paths)
    record_push(*paths, 100)
    assert book.sync() == [100]
    record_push(*paths, 200)
    assert book.sync() == [200]
    assert book.aliases() == {"stable": 100, "canary": 200}
    assert _served(paths) == ((100, 200), {"stable": 100, "canary": 200})
    record_push(*paths, 300)
    assert book.sync() == [300] and book.sync() == []
    assert book.aliases() == {"stable": 100, "canary": 300}
    assert _served(paths) == ((100, 300), {"stable": 100, "canary": 300})
    entries = {entry.version: entry for entry in book.entries()}
    assert list(entries) == [300, 200, 100]
    assert entries[200].aliases == []
    assert [(c.action, c.alias, c.version) for c in entries[200].history] == [
        ("register", "canary", 200),
        ("register", "canary", 300),  # took canary from 200
    ]
    assert entries[100].path == str(paths[1] / "100")


def test_a_team_may_push_straight_to_stable(paths):
    book = _registry(paths)
    for version in (100, 200):
        record_push(*paths, version)
        book.sync(new_alias="stable")
    assert book.aliases() == {"stable": 200}
    assert _served(paths) == ((200,), {"stable": 200})


def test_a_registry_started_on_earlier_pushes_keeps_the_newest_stable(paths):
    """A deployment that served the newest version before it had a registry goes on serving it."""
    for version in (100, 200, 300):
        record_push(*paths, version)
    book = _registry(paths)
    assert book.sync() == [100, 200, 300]
    assert book.aliases() == {"stable": 300}
    assert [e.aliases for e in book.entries()] == [["stable"], [], []]


def test_promote_then_rollback_returns_stable_to_the_version_before(paths):
    book = _pushed_one_by_one(paths, 100, 200, 300)
    change = book.promote(300, "stable", "canary looked fine")
    assert (change.action, change.version, change.previous, change.reason) == (
        "promote",
        300,
        100,
        "canary looked fine",
    )
    assert change.user and change.time.endswith("+00:00")
    assert book.aliases() == {"stable": 300}
    book.promote(200, "stable", "try 200")
    back = book.rollback("200 answers badly")
    assert (back.action, back.version, back.previous) == ("rollback", 300, 200)
    assert _served(paths) == ((300,), {"stable": 300})
    # Rolled back from 200 to 300: the next rollback passes over 200 to the stable before it.
    assert book.rollback("300 too").version == 100
    with pytest.raises(registry.RegistryError, match="no earlier stable version"):
        book.rollback("again")


def test_a_version_never_pushed_or_deleted_cannot_be_promoted(paths):
    book = _pushed_one_by_one(paths, 100, 200)
    with pytest.raises(registry.RegistryError, match="version 999 was not pushed"):
        book.promote(999, "stable", "typo")
    with pytest.raises(registry.RegistryError, match="already stable"):
        book.promote(100, "stable", "twice")
    prune_versions(str(paths[1]), keep=1)
    with pytest.raises(registry.RegistryError, match="no longer in"):
        book.promote(100, "canary", "gone")


def test_keep_never_deletes_a_version_holding_an_alias(paths):
    book = _pushed_one_by_one(paths, 100, 200, 300)
    removed = prune_versions(str(paths[1]), keep=1, protected=set(book.aliases().values()))
    assert removed == [f"{paths[1]}/200"]


def test_the_models_command_lists_promotes_and_refuses_in_one_line(paths, capsys):
    metadata_path, serving_dir = paths
    flags = ["--metadata-path", str(metadata_path), "--serving-dir", str(serving_dir)]
    assert cli.main(["models", *flags, "list"]) == ExitCode.STOPPED
    assert "run `agnews run` first" in capsys.readouterr().err
    record_push(*paths, 100)
    assert cli.main(["models", *flags, "list"]) == ExitCode.OK
    assert "Registered version 100" in capsys.readouterr().out
    record_push(*paths, 200)
    assert cli.main(["models", *flags, "promote", "200", "--to", "stable", "--reason", "ok"]) == 0
    out = capsys.readouterr().out
    assert "Registered version 200" in out and "Version 200 is now stable" in out
    record_push(*paths, 300)  # registered by the listing: a note on stderr, JSON on stdout
    assert cli.main(["models", *flags, "list", "--json"]) == ExitCode.OK
    printed = capsys.readouterr()
    listed = [json.loads(line) for line in printed.out.splitlines()]
    assert "Registered version 300" in printed.err
    assert [(e["version"], e["aliases"]) for e in listed] == [
        (300, ["canary"]),
        (200, ["stable"]),
        (100, []),
    ]
    assert listed[1]["history"][-1]["reason"] == "ok"
    assert cli.main(["models", *flags, "promote", "7", "--to", "canary", "--reason", "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "version 7 was not pushed" in err

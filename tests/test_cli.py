"""Command-line behaviour that needs no pipeline run."""
import pytest

from pipeline import cli


def _fake_versions(base, names):
    for name in names:
        (base / name).mkdir(parents=True)
        (base / name / "saved_model.pb").write_bytes(b"")


def test_keep_prunes_only_the_oldest_versions(tmp_path):
    _fake_versions(tmp_path, ["100", "300", "20", "200"])
    (tmp_path / "notes").mkdir()  # not a version: never touched
    removed = cli.prune_versions(str(tmp_path), keep=2)
    assert sorted(removed) == sorted([f"{tmp_path}/20", f"{tmp_path}/100"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["200", "300", "notes"]
    assert cli.prune_versions(str(tmp_path), keep=5) == []


def test_keep_below_one_is_refused(tmp_path):
    _fake_versions(tmp_path, ["1"])
    with pytest.raises(ValueError, match="at least 1"):
        cli.prune_versions(str(tmp_path), keep=0)
    assert (tmp_path / "1").is_dir()


def test_predict_without_a_model_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["predict", "--model", str(tmp_path / "nothing"), "Oil prices rise"]) == 1
    assert "run `agnews run` first" in capsys.readouterr().err


def test_keep_zero_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--keep", "0"])
    assert "--keep: must be a whole number of at least 1" in capsys.readouterr().err

import json

import pytest

from napari_autosam.cli import COMMANDS, build_parser, main


def test_every_documented_subcommand_is_registered():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    # every module is one sub-command of its name, except geojson: export-geojson and import-geojson
    assert set(subparsers.choices) == (set(COMMANDS) - {"geojson"}) | {"export-geojson", "import-geojson"}


def test_info_json_reports_the_isolated_cache(capsys, session_cache):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cache_dir"] == str(session_cache)
    assert info["devices"][-1] == "cpu"
    from napari_autosam.sam.checkpoints import checkpoint_names

    official_and_domain = {k: v for k, v in info["checkpoints"].items() if k != "tiny"}
    assert official_and_domain == dict.fromkeys(checkpoint_names())  # none cached in the isolated folder
    assert {"vit_b", "vit_l", "vit_h", "vit_b_histopathology"} <= official_and_domain.keys()
    assert "tiny" in info["checkpoints"]


def test_info_shows_the_data_folder_and_the_tiny_sam(capsys, tmp_path, monkeypatch, tiny_sam):
    monkeypatch.setenv("NAPARI_AUTOSAM_DATA", str(tmp_path / "data"))
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["data_dir"] == str(tmp_path / "data") and info["models"] == str(tmp_path / "data" / "models")
    assert info["checkpoints"]["tiny"].endswith(".pth")
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert str(tmp_path / "data") in text and "sam tiny" in text


def test_download_offline_fails_with_where_to_put_the_file(capsys, session_cache):
    assert main(["download", "vit_b"]) == 1
    err = capsys.readouterr().err
    assert "sam_vit_b_01ec64.pth" in err
    assert str(session_cache / "checkpoints" / "sam_vit_b_01ec64.pth") in err
    assert not list((session_cache / "checkpoints").glob("sam_vit_b*"))


def test_unknown_checkpoint_name_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["download", "vit_x"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err

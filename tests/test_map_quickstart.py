"""``hf-nft quickstart --mode map``: argument parsing and dispatch (the pipeline itself is measured, not tested)."""

import pytest

from hf_nft import map_quickstart
from hf_nft.cli import build_parser, main


def test_default_mode_is_sophon():
    args = build_parser().parse_args(["quickstart"])
    assert args.mode == "sophon" and args.setting is None  # each mode picks its own default setting


def test_map_mode_dispatches_to_the_map_pipeline(monkeypatch, tmp_path):
    calls = {}
    monkeypatch.setattr(map_quickstart, "run_map_quickstart", lambda output, **kwargs: calls.update(output=output, **kwargs))
    monkeypatch.setattr(map_quickstart, "print_map_result", lambda result: calls.update(printed=True))
    assert main(["quickstart", "--mode", "map", "--setting", "data-free", "--output", str(tmp_path), "--fast"]) == 0
    assert calls["output"] == str(tmp_path) and calls["setting"] == "data-free" and calls["fast"] and calls["printed"]


def test_unknown_map_setting_is_named(tmp_path):
    with pytest.raises(ValueError, match="Unknown MAP setting 'source-less'"):
        map_quickstart.run_map_quickstart(tmp_path, setting="source-less")

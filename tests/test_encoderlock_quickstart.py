"""``hf-nft quickstart --mode encoderlock``: parsing, dispatch, each setting's data, and (slow) the fast pipeline;
the dispatch of the other modes that share the command."""

import pytest
from transformers import AutoModelForImageClassification

from hf_nft import diffusion_quickstart, encoderlock_quickstart, map_quickstart, text_quickstart
from hf_nft.cli import main


def capture(monkeypatch, module, run, show):
    calls = {}
    monkeypatch.setattr(module, run, lambda output, **kwargs: calls.update(output=output, **kwargs))
    monkeypatch.setattr(module, show, lambda result: calls.update(printed=True))
    return calls


def test_encoderlock_mode_defaults_to_the_supervised_setting(monkeypatch, tmp_path):
    calls = capture(monkeypatch, encoderlock_quickstart, "run_encoderlock_quickstart", "print_encoderlock_result")
    assert main(["quickstart", "--mode", "encoderlock", "--output", str(tmp_path), "--fast"]) == 0
    assert calls["setting"] == "supervised" and calls["fast"] and calls["probes"] and calls["printed"]
    assert main(["quickstart", "--mode", "encoderlock", "--setting", "zero-shot", "--suite", "none"]) == 0
    assert calls["setting"] == "zero-shot" and not calls["probes"]


def test_map_mode_keeps_its_own_default_setting(monkeypatch, tmp_path):
    calls = capture(monkeypatch, map_quickstart, "run_map_quickstart", "print_map_result")
    assert main(["quickstart", "--mode", "map", "--output", str(tmp_path)]) == 0
    assert calls["setting"] == "source-available"


@pytest.mark.parametrize("mode, module, run, show", [
    ("diffusion", diffusion_quickstart, "run_diffusion_quickstart", "print_diffusion_result"),
    ("text", text_quickstart, "run_text_quickstart", "print_text_result"),
])
def test_diffusion_and_text_modes_write_under_their_own_folder(monkeypatch, tmp_path, mode, module, run, show):
    calls = capture(monkeypatch, module, run, show)
    assert main(["quickstart", "--mode", mode, "--output", str(tmp_path), "--fast", "--seed", "3"]) == 0
    assert calls["output"] == f"{tmp_path}/{mode}" and calls["fast"] and calls["seed"] == 3 and calls["printed"]


def test_each_setting_gets_only_its_data():
    authorized, prohibited = encoderlock_quickstart.setting_data("supervised")
    assert "labels" in prohibited.column_names and len(prohibited) > 0 and "labels" in authorized.column_names
    assert "labels" not in encoderlock_quickstart.setting_data("unsupervised")[1].column_names
    two = encoderlock_quickstart.setting_data("supervised", renderings=("nearest", "bilinear"))[1]
    assert len(two) == 2 * len(prohibited)
    assert encoderlock_quickstart.setting_data("zero-shot")[1] is None
    with pytest.raises(ValueError, match="Unknown EncoderLock setting 'semi'"):
        encoderlock_quickstart.setting_data("semi")


@pytest.mark.slow
def test_fast_quickstart_locks_saves_and_probes(tmp_path):
    result = encoderlock_quickstart.run_encoderlock_quickstart(tmp_path, "supervised", fast=True, progress=False)
    summary = result.summary()
    assert 0 < summary["weights_changed"] <= summary["weights_selected"]
    assert summary["prohibited_unprotected"] > summary["prohibited_scratch"]
    assert AutoModelForImageClassification.from_pretrained(result.output_dir / "locked") is not None
    assert (result.output_dir / "summary.json").is_file() and (result.output_dir / "curves_prohibited.png").is_file()

"""The full quickstart meets the foundation issue's claims (slow: about 7 minutes on one CPU thread).

Run with ``pytest -m slow``; the default test command deselects it.
"""

import pytest

from hf_nft.quickstart import run_quickstart


@pytest.mark.slow
def test_full_quickstart_meets_every_claim(tmp_path):
    result = run_quickstart(tmp_path, progress=False)
    failed = [name for name, holds in result.checks.items() if not holds]
    assert not failed, failed
    assert len(result.checks) == 1 + 2 * len(result.report.results)
    assert "tuned" in result.report.results and result.seconds["total"] > 0

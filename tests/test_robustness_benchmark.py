"""The robustness benchmark runs, tries every reader, and finds nothing but clear errors and
intact results (its kill section runs in the benchmark itself: minutes, not a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mitokit.io.formats import READERS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "robustness.py"


def test_robustness_benchmark_small_run_has_no_bad_outcome():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "15", "--kills", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    folders = {"imagefolder"}  # a folder of images, fuzzed by its own tests
    assert set(result["readers"]) == (set(READERS) - folders) | {"cli_labels_summary"}
    for name, tally in result["readers"].items():
        if name != "cli_labels_summary":
            assert tally["tried"] == 15, name
        assert tally["tried"] == tally["intact"] + tally["clear_error"] + tally["bad"]
    assert result["writes"]["tried"] > 50 and result["writes"]["cli"]["tried"] >= 10
    assert result["names"]["tried"] >= 10
    assert result["bad_total"] == 0, json.dumps(result, indent=1)

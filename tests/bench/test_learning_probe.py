"""The shortened learning probe: trained through the CLI, the tiny model answers from its media and stage 2 learns."""

from __future__ import annotations

import pytest

from bench.learning_probe import QUICK, VALUES, run


@pytest.mark.slow
def test_quick_probe_learns_from_the_media(tmp_path):
    results = run(tmp_path, QUICK)
    for modality in VALUES:
        # the attribute is only in the media: right with the sample's own, chance with another sample's
        assert results[f"{modality}_accuracy"] >= 0.9, (modality, results)
        assert results[f"{modality}_accuracy_other_media"] <= 0.65, (modality, results)
    # the full probe (600 stage-2 steps) reaches >= 10x (40x measured); the 300 here give about 9x
    assert results["stage2_mse_drop"] >= 5, results

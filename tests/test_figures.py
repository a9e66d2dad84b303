import numpy as np
import pytest

from figures import files, histograms


def _counts(scores):
    return histograms.table({"synth-ava": np.asarray(scores)}, {"synth-ava": "AVA"})


def test_a_figure_is_drawn_again_only_when_its_data_title_or_code_change(tmp_path, monkeypatch):
    out = tmp_path / "fig1"
    written = histograms.draw(_counts([4.5, 5.5, 5.6, 6.1]), out, "Figure 1")
    assert [p.name for p in written] == ["fig1.png", "fig1.pdf", "fig1.csv"]
    assert all(p.stat().st_size > 500 for p in written[:2])

    def refuse():
        raise AssertionError("drawn again")

    monkeypatch.setattr(files, "pyplot", refuse)
    assert histograms.draw(_counts([4.5, 5.5, 5.6, 6.1]), out, "Figure 1") == written
    for data, title in (([4.5, 5.5, 5.6, 7.1], "Figure 1"), ([4.5, 5.5, 5.6, 6.1], "Other")):
        with pytest.raises(AssertionError, match="drawn again"):
            histograms.draw(_counts(data), out, title)
    monkeypatch.setattr(files, "code_key", lambda: "changed drawing code")
    with pytest.raises(AssertionError, match="drawn again"):
        histograms.draw(_counts([4.5, 5.5, 5.6, 6.1]), out, "Figure 1")
    monkeypatch.undo()
    (tmp_path / "fig1.pdf").unlink()  # a missing file: drawn again
    histograms.draw(_counts([4.5, 5.5, 5.6, 6.1]), out, "Figure 1")
    assert (tmp_path / "fig1.pdf").exists()

"""``braincode demo`` end to end at a small size: per-ROI scores against the truth, and the summary page."""

from braincode.pipeline.demo import run_demo


def test_demo_scores_rois_against_the_truth_and_writes_the_page(tmp_path, capsys):
    table = run_demo(tmp_path / "demo", n_train=120, n_test=20, seed=0, device="cpu")
    assert {"family", "roi", "voxels", "r", "r_truth", "r_test", "ceiling"} <= set(table.columns)
    by_roi = table.set_index("roi")
    assert by_roi.loc["FFA-1", "r_truth"] > 0.3 and by_roi.loc["PPA", "r_truth"] > 0.3
    assert abs(by_roi.loc["parietal", "r_truth"]) < 1e-9  # the non-responsive voxels have no signal to find
    html = (tmp_path / "demo" / "index.html").read_text()
    assert "FFA-1" in html and "data:image/png;base64," in html
    assert (tmp_path / "demo" / "fit" / "lh_pred_test.npy").exists()
    assert "FFA-1" in capsys.readouterr().out

from __future__ import annotations

from muselens.benchmarks.results_md import main as render
from muselens.cli import main as cli


def test_results_md_renders_measured_runs_with_their_command(tiny_museum, tmp_path):
    results = tmp_path / "results"
    assert cli(["evaluate", str(tiny_museum), "--method", "sift", "--out", str(results / "tiny-sift"),
                "--no-progress", "--workers", "1", "--no-clustering"]) == 0
    (results / "tiny-sift" / "NOTES.md").write_text("A person's reading of the numbers.")
    out = tmp_path / "RESULTS.md"
    assert render(["--results", str(results), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## tiny-sift" in text
    assert f"`muselens evaluate {tiny_museum} --method sift" in text
    assert "| sift |" in text and "A person's reading" in text


def test_export_results_render_variants_side_by_side(run_dir, tmp_path):
    results = tmp_path / "results"
    assert cli(["export", str(run_dir), "--out", str(tmp_path / "bundle"), "--precision", "fp32,fp16",
                "--latency-runs", "1", "--force", "--results-json", str(results / "tiny-export" / "export.json")]) == 0
    out = tmp_path / "RESULTS.md"
    assert render(["--results", str(results), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## tiny-export" in text and f"`muselens export {run_dir}" in text
    assert "| fp32 |" in text and "| fp16 |" in text and "threshold" in text


def test_every_committed_reading_is_rendered_once():
    """RESULTS.md from the committed results: each NOTES.md appears, and only once (a bench's
    own markdown and the section around it both adding it printed some twice)."""
    from pathlib import Path

    from muselens.benchmarks.results_md import HERE, render as render_results

    text = render_results(Path(HERE) / "results")
    notes = sorted((Path(HERE) / "results").glob("*/NOTES.md"))
    assert notes
    for path in notes:
        reading = path.read_text().strip()
        assert text.count(reading) == 1, f"{path} is rendered {text.count(reading)} times"

"""benchmarks/plot_counts.py: count confusions of benchmark JSON files as row percentages, drawn as heat maps."""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from plot_counts import main, panels, row_percent  # noqa: E402


def result(sets: dict[str, dict[str, list[list[int]]]], given: tuple[str, ...] = ()) -> dict:
    """{set: {method: confusion}} -> a record shaped as bench_accuracy.py --json writes it."""
    return {"sets": {name: {"methods": {m: {"metrics": {"confusion": c}, **({"given_count": True} if m in given else {})}
                                        for m, c in methods.items()}} for name, methods in sets.items()}}


def test_rows_are_percent_of_their_clips_and_an_empty_row_is_blank():
    matrix = row_percent([[0, 0, 0, 0], [0, 47, 3, 0], [0, 0, 49, 1], [0, 0, 17, 33]])
    assert np.all(np.isnan(matrix[0]))
    np.testing.assert_allclose(np.nansum(matrix[1:], axis=1), 100.0)
    np.testing.assert_allclose(matrix[3], [0, 0, 34, 66])


def test_methods_are_filtered_renamed_and_given_counts_left_out():
    first = result({"count20": {"model a": [[4, 0], [1, 3]], "DUET": [[2, 2], [0, 4]], "SRP-PHAT, given the true count":
                                [[4, 0], [0, 4]]}}, given=("SRP-PHAT, given the true count",))
    second = result({"count20": {"model b": [[1, 0], [0, 1]]}, "rsmnmf": {"model a": [[0, 0], [2, 2]]}})
    found = panels([first, second], ["rsmnmf", "count20"], ["model", "DUET", "SRP"], {"model a": "default"})
    assert [(s, m) for s, m, _ in found] == [("rsmnmf", "default"), ("count20", "default"), ("count20", "DUET")]
    np.testing.assert_allclose(found[1][2], [[100, 0], [25, 75]])  # count20 from the first file that holds it


def test_the_command_writes_a_png_and_says_so_when_nothing_matches(tmp_path, capsys):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(result({"count": {"model x": [[5, 0, 0], [1, 4, 0], [0, 2, 3]], "DUET": [[5, 0, 0], [3, 2, 0],
                                                                                                     [1, 3, 1]]}})))
    out = tmp_path / "plots" / "counts.png"
    assert main([str(path), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "model x" in capsys.readouterr().out
    assert main([str(path), "--sets", "rsmnmf", "--out", str(tmp_path / "none.png")]) == 2
    assert not (tmp_path / "none.png").exists()


def test_a_folder_or_broken_json_is_one_line_and_exit_2(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for given in (tmp_path, broken):
        assert main([str(given), "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("plot_counts: ") and "\n" not in err and str(given) in err
    assert not (tmp_path / "x.png").exists()

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ecgwatch.datasets import DataFormatError, DataUnavailableError, load_directory
from ecgwatch.datasets.ecg5000 import read_file

ROW = " ".join(f"{v:.7e}" for v in np.sin(np.linspace(0, 6, 140)))


def test_all_formats_of_the_real_files_agree(data_root: Path) -> None:
    folder = data_root / "ecg5000"
    parsed = {suffix: read_file(folder / f"ECG5000_TRAIN{suffix}") for suffix in (".arff", ".txt", ".ts")}
    reference = parsed[".txt"]
    assert reference.x.shape == (500, 140)
    assert np.bincount(reference.y).tolist() == [0, 292, 177, 10, 19, 2]
    for beats in parsed.values():
        np.testing.assert_array_equal(beats.y, reference.y)
        np.testing.assert_allclose(beats.x, reference.x, atol=1e-7)


def test_directory_merges_train_and_test(ecg_beats) -> None:
    assert ecg_beats.x.shape == (5000, 140)
    assert np.bincount(ecg_beats.y).tolist() == [0, 2919, 1767, 96, 194, 24]


def test_directory_with_only_train_split(tmp_path: Path, data_root: Path) -> None:
    shutil.copy(data_root / "ecg5000" / "ECG5000_TRAIN.txt", tmp_path)
    assert len(load_directory(tmp_path)) == 500


def test_tsv_label_first(tmp_path: Path) -> None:
    path = tmp_path / "ECG5000_TRAIN.tsv"
    path.write_text("2\t" + ROW.replace(" ", "\t") + "\n1\t" + ROW.replace(" ", "\t") + "\n")
    beats = read_file(path)
    assert beats.y.tolist() == [2, 1]
    assert beats.x.shape == (2, 140)


def test_empty_directory_says_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match=r"ECG5000_TRAIN\.arff"):
        load_directory(tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("ECG5000_TRAIN.txt", f"1 {ROW}\n1 {ROW} 0.5\n", r"row 2: expected 140 samples, found 141"),
        ("ECG5000_TRAIN.txt", f"1 {ROW}\n7 {ROW}\n", r"row 2: label 7 is not one of 1..5"),
        ("ECG5000_TRAIN.txt", f"1.5 {ROW}\n", r"row 1: label '1.5' is not an integer"),
        ("ECG5000_TRAIN.txt", f"x {ROW}\n", r"row 1: label 'x' is not a number"),
        ("ECG5000_TRAIN.txt", "1 " + ROW.replace(ROW.split()[3], "nan", 1) + "\n", r"row 1: sample 4 is not a finite"),
        ("ECG5000_TRAIN.txt", "1 " + ROW.replace(ROW.split()[0], "abc", 1) + "\n", r"row 1: could not convert"),
        ("ECG5000_TRAIN.txt", "\n\n", r"no beats in file"),
        ("ECG5000_TRAIN.ts", "@data\n" + ROW.replace(" ", ",") + "\n", r"line 2: no ':label'"),
        ("ECG5000_TRAIN.arff", "@relation x\n@attribute a numeric\n@data\nnot,arff\n", r"not a valid ARFF"),
        ("ECG5000_TRAIN.csv", ROW, r"unsupported suffix"),
    ],
)
def test_malformed_files_name_file_row_and_problem(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataFormatError, match=message) as info:
        read_file(path)
    assert str(path) in str(info.value)


def test_arff_with_wrong_attribute_count(tmp_path: Path) -> None:
    header = "@relation ECG\n" + "".join(f"@attribute att{i} numeric\n" for i in range(1, 11))
    path = tmp_path / "ECG5000_TEST.arff"
    path.write_text(header + "@attribute target {1,2,3,4,5}\n@data\n" + ",".join(["0.1"] * 10) + ",1\n")
    with pytest.raises(DataFormatError, match="expected 140 sample attributes"):
        read_file(path)


def test_arff_missing_value(tmp_path: Path, data_root: Path) -> None:
    text = (data_root / "ecg5000" / "ECG5000_TRAIN.arff").read_text().splitlines()
    first_data = text.index("@data") + 1
    values = text[first_data].split(",")
    values[5] = "?"
    text[first_data] = ",".join(values)
    path = tmp_path / "ECG5000_TRAIN.arff"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataFormatError, match="data row 1: missing value"):
        read_file(path)

"""Cell parsing rules shared by the predictions and labels readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.core.errors import InputError
from mil.evaluate.columns import label_text, numeric_column, text_column


def test_label_text_integer_codes_and_blanks():
    out = label_text(pd.Series([1, 1.0, " 1 ", "AML ", "", np.nan, 2.5, "007"]))
    assert out.tolist()[:5] == ["1", "1", "1", "AML", out[4]] and pd.isna(out[4]) and pd.isna(out[5])
    assert out[6] == "2.5" and out[7] == "7"  # a class code, not an id: ids go through text_column


def test_text_column_keeps_ids():
    out = text_column(pd.Series(["007", " P1 ", "", None]))
    assert out[0] == "007" and out[1] == "P1" and pd.isna(out[2]) and pd.isna(out[3])


def test_numeric_column_accepts_spreadsheet_booleans_and_refuses_text():
    assert numeric_column(pd.Series(["True", "false", "1", None]), "x.csv", "dead").tolist()[:3] == [1, 0, 1]
    with pytest.raises(InputError, match="x.csv: column dead must be numeric, found 'yes'"):
        numeric_column(pd.Series(["1", "yes"]), "x.csv", "dead")

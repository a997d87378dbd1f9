"""Seeded fuzz over the label reader, through `mil train` (the entry point a user runs): random bytes,
truncations, flipped bytes, odd ids, encodings and BOMs, line endings, delimiters, duplicate and blank
headers, empty files, huge and non-finite numbers, ragged rows and broken quoting.

Every case must end in exit 0 (a run written) or exit 2 (one red line naming the file, no run folder, no
staging left behind); never a traceback, never exit 1; well-formed tables in another dress (BOM, CR line
endings, odd ids such as "NA" or "../x", padded headers) must train. The figures (cases, accepted, refused) are printed for
benchmarks/RESULTS.md (`pytest -s tests/faults/test_cli_fuzz_labels.py`).
"""

from __future__ import annotations

import csv
import io
from collections import Counter

import numpy as np
import pytest

from tests.faults.cli_cases import mil, staging_left
from tests.train_helpers import SINGLE_MODEL_FLAGS, make_cohort, single_thread  # noqa: F401

SEED = 13
ARGS = ["--target", "apl_aml_healthy", "--folds", "2", "--epochs", "1", "--device", "cpu", "--model", "mean_pool",
        "--set", "evaluate.n_bootstrap=5", "--set", "train.batch_size=4", *SINGLE_MODEL_FLAGS]  # fmt: skip
ODD_IDS = ["../../etc/passwd", "<script>alert(1)</script>", "名前", "a,b", 'say "x"', "NA", "nan", "None",
           "x" * 3000, "\u200b", "🩸", " padded ", "-1", "1e5", "00\t7", "line\nbreak"]  # fmt: skip
# Well-formed tables in another dress: these must train (ids such as "NA" are patients, not missing values).
MUST_ACCEPT = {"valid", "odd id", "encoding utf-8-sig", "line endings", "no final newline", "padded header",
               "quoted newline", "huge number, other column", "1 MB field"}  # fmt: skip
NUMBERS = ["1e400", "99999999999999999999", "-inf", "inf", "nan", "NaN", "0x10", "1_000", "-0", "1e-400"]


@pytest.fixture(scope="module")
def fuzz_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    bags, labels = make_cohort(root, n_patients=10, n_instances=(4, 6))
    return bags, labels.read_text()


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _csv(rows: list[list[str]], delimiter: str = ",", newline: str = "\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return buf.getvalue()


def label_files(text: str, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """(family, bytes) of every case, derived from the valid table `text` with the seeded `rng`."""
    valid, rows = text.encode(), _rows(text)
    header, body = rows[0], rows[1:]
    target = header.index("apl_aml_healthy")
    cases: list[tuple[str, bytes]] = [("valid", valid)]
    cases += [("random bytes", rng.bytes(int(n))) for n in (1, 7, 64, 512, 4096, 20_000)]
    cases += [("truncated", valid[: int(k)]) for k in rng.integers(1, len(valid), 10)]
    for _ in range(10):
        flipped = bytearray(valid)
        for i in rng.integers(0, len(valid), int(rng.integers(1, 6))):
            flipped[i] = int(rng.integers(0, 256))
        cases.append(("flipped bytes", bytes(flipped)))
    for _ in range(4):
        at = int(rng.integers(0, len(valid)))
        cases.append(("inserted junk", valid[:at] + rng.bytes(int(rng.integers(1, 40))) + valid[at:]))
    for odd in ODD_IDS:
        first = body[0][0]
        changed = [[odd if cell == first and j == 0 else cell for j, cell in enumerate(r)] for r in body]
        cases.append(("odd id", _csv([header, *changed]).encode()))
    accented = _csv([header, *[[*r[:3], "Leucémie", *r[4:]] for r in body]])
    for encoding in ("utf-8-sig", "utf-16", "utf-16-be", "utf-32", "latin-1", "cp1252", "mac-roman"):
        cases.append((f"encoding {encoding}", accented.encode(encoding)))
    for newline in ("\r\n", "\r"):
        cases.append(("line endings", _csv(rows, newline=newline).encode()))
    cases.append(("no final newline", valid.rstrip(b"\n")))
    for delimiter in (";", "\t", "|", " "):
        cases.append((f"delimiter {delimiter!r}", _csv(rows, delimiter=delimiter).encode()))
    for dup in (0, target):
        cases.append(
            ("duplicate header", _csv([[*header, header[dup]], *[[*r, r[dup]] for r in body]]).encode())
        )
    cases.append(("blank header name", _csv([[*header, ""], *[[*r, "x"] for r in body]]).encode()))
    cases.append(("padded header", _csv([[f" {h} " for h in header], *body]).encode()))
    cases.append(("header only", _csv([header]).encode()))
    cases.append(("no header", _csv(body).encode()))
    cases += [("empty", b""), ("empty", b"\n"), ("empty", b"   \n\n"), ("empty", b",,,\n")]
    for number in NUMBERS:
        changed = [[number if j == target and cell else cell for j, cell in enumerate(r)] for r in body]
        cases.append(("huge number", _csv([header, *changed]).encode()))
        cases.append(
            ("huge number, other column", _csv([header, *[[*r[:-2], number, r[-1]] for r in body]]).encode())
        )
    cases.append(("ragged row", valid + b"P999,P999-S0,site_a,AML,,AML,,,1,1,extra,extra\n"))
    cases.append(("short row", valid + b"P001\n"))
    cases.append(("quoted newline", _csv([header, *[[*r[:3], "two\nlines", *r[4:]] for r in body]]).encode()))
    cases.append(("unbalanced quote", valid.replace(b"\nP002", b'\n"P002', 1)))
    cases.append(
        (
            "1 MB field",
            _csv([header, *[[*r[:3], "x" * 1_000_000, *r[4:]] for r in body[:2]], *body[2:]]).encode(),
        )
    )
    cases.append(("NUL bytes", valid.replace(b"AML", b"A\x00ML", 1)))
    return cases


def test_fuzz_label_files_never_crash(fuzz_cohort, tmp_path, capsys):
    bags, text = fuzz_cohort
    rng = np.random.default_rng(SEED)
    outcomes: Counter[tuple[str, int]] = Counter()
    for i, (family, data) in enumerate(label_files(text, rng)):
        labels, out = tmp_path / f"labels-{i}.csv", tmp_path / f"run-{i}"
        labels.write_bytes(data)
        done = mil(capsys, "train", "--bags", bags, "--labels", labels, "-o", out, *ARGS)
        where = f"case {i} ({family}): exit {done.code}\n{done.err[-2000:]}"
        assert done.code in (0, 2), where
        assert "Traceback" not in done.err + done.out, where
        assert done.code == 0 or family not in MUST_ACCEPT, where
        if done.code == 2:
            line = done.one_line_error()
            assert str(labels) in line or str(bags) in line, where  # names the file to fix
            assert not out.exists(), where
        else:
            assert (out / "config.yaml").is_file(), where
        assert staging_left(tmp_path) == [], where
        outcomes[(family, done.code)] += 1
    accepted = sum(n for (_, code), n in outcomes.items() if code == 0)
    refused = sum(n for (_, code), n in outcomes.items() if code == 2)
    assert outcomes[("valid", 0)] == 1 and accepted >= 30 and refused >= 50, outcomes
    print(f"\nlabel fuzz (seed {SEED}): {accepted + refused} files, {accepted} accepted (exit 0), "
          f"{refused} refused with one line (exit 2), 0 tracebacks")  # fmt: skip
    for (family, code), n in sorted(outcomes.items()):
        print(f"  {family}: {n} x exit {code}")

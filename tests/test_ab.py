"""`harness ab`: blinded A/B rating sheets - export, fill, import (rates, agreement, figure), judge."""
import csv
import json
import zipfile

import numpy as np
import pytest

from harness.lifecycle import ModelSpec
from click.testing import CliRunner
from openpyxl import load_workbook

from harness import registry, store
from harness.cli import main
from harness.contract import RunHeader, SampleRecord, Turn
from harness.errors import HarnessError
from harness.models.scripted import ScriptedModel
from reports import ab
from reports.agreement import cohen_kappa, krippendorff_alpha

FLIP = {"win": "lose", "tie": "tie", "lose": "win"}
PREFERRED = "more supportive, effective and human-preferred"


def make_run(root, name, model, ids, *, task="mesc", split="test", thinking=True, text="I hear you ({i})."):
    folder = root / name
    folder.mkdir()
    store.write_json(folder / "run.json", RunHeader(run_id=name, task=task, model=model, split=split, seed=0, metrics=[],
                                                    started_at="2025-01-01T00:00:00+00:00", n_samples=len(ids), status="finished"))
    records = []
    for index, i in enumerate(ids):
        response = text.format(i=i)  # never the model's name: the blinding test looks for it in the sheet
        records.append(SampleRecord(
            index=index, id=f"mesc/test/d{i:04d}/t01", reference="ref",
            history=[Turn(speaker="Client", text=f"I can't sleep, day {i}."), Turn(speaker="Therapist", text="Tell me more."),
                     Turn(speaker="Client", text="It's my mother, \"again\", ça va pas.")],
            output=response, response=response, thinking=f"{text[:6]} thinks about {i}" if thinking else None))
    store.rewrite_records(folder, records)
    return folder


@pytest.fixture
def runs(tmp_path):
    # A answers samples 0..9, B answers 2..11: 8 shared. B's replies start with '=' and hold commas, quotes,
    # a newline and a control character, which must survive both sheet formats unchanged.
    a = make_run(tmp_path, "run-alpha", "modelx", range(10))
    b = make_run(tmp_path, "run-beta", "modely", range(2, 12), text="=SUM(1) \"quoted\", line\nbreak\x07 {i}")
    return a, b


def key_of(path):
    return ab.ABKey.model_validate_json(path.read_text())


def sheet_value(key, row, verdict_for_a):
    """What a rater writes in the sheet (verdict for Response 1) to say `verdict_for_a` about run A."""
    return verdict_for_a if key.rows[row].response_1 == "a" else FLIP[verdict_for_a]


def fill_xlsx(source, target, key, columns):
    """columns: header -> run A's verdicts in key row order."""
    workbook = load_workbook(source)
    sheet = workbook["ratings"]
    header = [c.value for c in sheet[1]]
    row_of = {sheet.cell(row=r, column=1).value: r for r in range(2, sheet.max_row + 1)}
    for name, verdicts in columns.items():
        col = header.index(name) + 1
        for i, verdict in enumerate(verdicts):
            sheet.cell(row=row_of[key.rows[i].row], column=col, value=sheet_value(key, i, verdict) if verdict else None)
    workbook.save(target)
    return target


def edit_xlsx(path, cell, value):
    workbook = load_workbook(path)
    workbook["ratings"][cell] = value
    workbook.save(path)


def read_csv(path):
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


def write_csv(path, rows):
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)


R1 = ["win", "win", "win", "win", "tie", "lose"]  # run A's verdicts from rater 1, key row order
R2 = ["win", "win", "tie", "tie", "tie", "lose"]


@pytest.fixture
def exported(runs, tmp_path):
    a, b = runs
    sheet = tmp_path / "sheet.xlsx"
    result = ab.export(a, b, sheet, n=6, seed=1)
    return sheet, result.key_path, result.key


@pytest.fixture
def filled(exported, tmp_path):
    sheet, key_path, key = exported
    target = fill_xlsx(sheet, tmp_path / "filled.xlsx", key, {f"{PREFERRED} [rater 1]": R1, f"{PREFERRED} [rater 2]": R2})
    return target, key_path, key


def refused(paths, key_path, *needles):
    folder = paths[0].parent
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with pytest.raises(HarnessError) as err:
        ab.import_sheets(paths, key_path)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before, "a refused import wrote something"
    return message


# --------------------------------------------------------------------------- agreement, by hand


def test_kappa_and_alpha_against_hand_computed_values():
    # codes lose 0, tie 1, win 2; rater 1 W W T L W L, rater 2 W T T L L L
    one, two = [2, 2, 1, 0, 2, 0], [2, 1, 1, 0, 0, 0]
    # p_o = 4/6; marginals (W,T,L) 3,1,2 and 1,2,3: p_e = (3+2+6)/36 = 11/36; kappa = (24-11)/(36-11) = 13/25
    assert cohen_kappa(one, two, 3) == pytest.approx(13 / 25)
    # coincidences: WW 2, TT 2, LL 4, WT = TW = 1, WL = LW = 1; n_W 4, n_T 3, n_L 5, n 12
    # nominal: 1 - 11 * 4 / (144 - 16 - 9 - 25) = 1 - 44/94 = 25/47
    assert krippendorff_alpha([one, two], 3, "nominal") == pytest.approx(25 / 47)
    # ordinal: d(L,T) = (8/2)^2 = 16, d(T,W) = (7/2)^2 = 12.25, d(L,W) = (12 - 9/2)^2 = 56.25
    # observed 2*12.25 + 2*56.25 = 137; expected 2*(15*16 + 12*12.25 + 20*56.25) = 3024; 1 - 11*137/3024
    assert krippendorff_alpha([one, two], 3, "ordinal") == pytest.approx(1517 / 3024)


def test_alpha_with_missing_data_matches_krippendorffs_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, values 1..5
    nan = np.nan
    data = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
                     [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
                     [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
                     [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]) - 1
    assert krippendorff_alpha(data, 5, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(data, 5, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(data, 5, "interval") == pytest.approx(0.849, abs=5e-4)


def test_agreement_edge_cases():
    nan = np.nan
    # kappa uses only the items both rated: the two missing items change nothing
    assert cohen_kappa([2, 2, 1, 0, 2, 0, nan, 2], [2, 1, 1, 0, 0, 0, 1, nan], 3) == pytest.approx(13 / 25)
    assert np.isnan(cohen_kappa([1, 1, 1], [1, 1, 1], 3))  # no variation: undefined, not 1
    assert np.isnan(krippendorff_alpha([[1, 1], [1, 1]], 3, "ordinal"))
    assert np.isnan(krippendorff_alpha([[1, nan], [nan, 2]], 3))  # no item rated twice
    assert krippendorff_alpha([[0, 1, 2], [0, 1, 2], [0, 1, 2]], 3, "ordinal") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        krippendorff_alpha([[0, 1]], 3, "ratio")


# --------------------------------------------------------------------------- export


def test_export_is_blinded_seeded_and_has_drop_downs(runs, exported, tmp_path):
    sheet, key_path, key = exported
    assert key_path == tmp_path / "sheet.xlsx.key.json" and key.shared == 8 and len(key.rows) == 6
    assert {r.response_1 for r in key.rows} == {"a", "b"}  # seed 1 puts each run first on some row
    workbook = load_workbook(sheet)
    assert workbook.sheetnames == ["ratings", "instructions"]
    rows = list(workbook["ratings"].iter_rows(values_only=True))
    assert list(rows[0]) == ["row", "context", "response 1", "response 2", f"{PREFERRED} [rater 1]", f"{PREFERRED} [rater 2]"]
    records = {name: {r.id: r for r in store.read_records(run)} for name, run in zip("ab", runs)}
    for key_row, row in zip(key.rows, rows[1:]):
        other = "b" if key_row.response_1 == "a" else "a"
        assert row[0] == key_row.row
        assert row[1].startswith("Client: I can't sleep") and "\nTherapist: Tell me more.\n" in row[1]
        assert row[2] == ab.clean(records[key_row.response_1][key_row.sample_id].response)
        assert row[3] == ab.clean(records[other][key_row.sample_id].response)
        assert row[4] is None and row[5] is None
    # the '=' reply is text, not a formula, and the control character became U+FFFD
    beta = rows[1][2] if key.rows[0].response_1 == "b" else rows[1][3]
    assert beta.startswith("=SUM(1)") and "\ufffd" in beta and "\x07" not in beta
    validations = workbook["ratings"].data_validations.dataValidation
    assert len(validations) == 1 and validations[0].formula1 == '"win,tie,lose"' and validations[0].showErrorMessage
    assert str(validations[0].sqref) == "E2:E7 F2:F7"
    # blinding: no run id, model name or sample id anywhere in the workbook
    with zipfile.ZipFile(sheet) as z:
        everything = "".join(z.read(name).decode("utf-8", "replace") for name in z.namelist())
    for secret in ("run-alpha", "run-beta", "modelx", "modely", "mesc/test/d"):
        assert secret not in everything
    # the same seed draws the same rows in the same order; another seed does not
    again = ab.export(*runs, tmp_path / "again.xlsx", n=6, seed=1).key
    other = ab.export(*runs, tmp_path / "other.xlsx", n=6, seed=2).key
    assert [(r.sample_id, r.response_1, r.sha256) for r in again.rows] == [(r.sample_id, r.response_1, r.sha256) for r in key.rows]
    assert [(r.sample_id, r.response_1) for r in other.rows] != [(r.sample_id, r.response_1) for r in key.rows]


def test_export_takes_only_shared_samples_and_caps_n(runs, tmp_path):
    key = ab.export(*runs, tmp_path / "all.csv", n=100, seed=0).key
    assert sorted(int(r.sample_id.split("/d")[1][:4]) for r in key.rows) == list(range(2, 10))
    assert [r.row for r in key.rows] == [f"R00{i}" for i in range(1, 9)]


def test_export_refusals(runs, tmp_path):
    a, b = runs
    other_split = make_run(tmp_path, "run-val", "m", range(5), split="val")
    other_task = make_run(tmp_path, "run-esconv", "m", range(5), task="esconv")
    disjoint = make_run(tmp_path, "run-far", "m", range(50, 55))
    no_thinking = make_run(tmp_path, "run-plain", "m", range(10), thinking=False)
    cases = [
        ((a, other_split, tmp_path / "s1.xlsx"), {}, "differ in split ('test'"),
        ((a, other_task, tmp_path / "s2.xlsx"), {}, "differ in task ('mesc'"),
        ((a, disjoint, tmp_path / "s3.xlsx"), {}, "share no sample"),
        ((a, no_thinking, tmp_path / "s4.xlsx"), {"criteria_text": "thinking"}, "run-plain has no thinking process"),
        ((a, b, tmp_path / "s5.txt"), {}, "is an .xlsx workbook or a .csv"),
        ((a, b, tmp_path / "s6.xlsx"), {"criteria_text": "kind; kind"}, "distinct criteria"),
        ((a, b, tmp_path / "s7.xlsx"), {"criteria_text": "a [b]"}, "without '[' or ']'"),
        ((a, b, tmp_path / "s8.xlsx"), {"n": 0}, "--n must be a positive"),
        ((a, b, tmp_path / "s9.xlsx"), {"key_path": tmp_path / "s9.xlsx"}, "is the sheet itself"),
        ((a, tmp_path / "nowhere", tmp_path / "s10.xlsx"), {}, "run.json: not found"),
    ]
    for args, kw, needle in cases:
        with pytest.raises(HarnessError, match=None) as err:
            ab.export(*args, **kw)
        assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".xlsx", ".csv", ".json", ".tmp")]
    ab.export(a, b, tmp_path / "s.xlsx")
    with pytest.raises(HarnessError, match="exists"):  # never overwrite a sheet that may hold ratings
        ab.export(a, b, tmp_path / "s.xlsx")
    ab.export(a, b, tmp_path / "s.xlsx", force=True)


def test_a_failed_export_leaves_nothing(runs, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ab, "_build_workbook", broken)
    with pytest.raises(OSError):
        ab.export(*runs, tmp_path / "s.xlsx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-alpha", "run-beta"]  # no key without its sheet, no temp file


# --------------------------------------------------------------------------- import


def test_round_trip_rates_agreement_and_figure(filled):
    sheet, key_path, key = filled
    result = ab.import_sheets([sheet], key_path, resamples=500, seed=3)
    (entry,) = result["criteria"]
    # 12 ratings: win 4+2, tie 1+3, lose 1+1
    assert entry["rates"] == pytest.approx({"win": 6 / 12, "tie": 4 / 12, "lose": 2 / 12})
    assert entry["counts"] == {"win": 6, "tie": 4, "lose": 2}
    assert entry["per_rater"]["rater 1"]["rates"] == pytest.approx({"win": 4 / 6, "tie": 1 / 6, "lose": 1 / 6})
    assert entry["per_rater"]["rater 2"]["rates"] == pytest.approx({"win": 2 / 6, "tie": 3 / 6, "lose": 1 / 6})
    # W W W W T L vs W W T T T L: p_o 4/6, marginals (W,T,L) 4,1,1 and 2,3,1, p_e 12/36: kappa (2/3-1/3)/(2/3) = 1/2
    # coincidences WW 4, TT 2, LL 2, WT = TW 2; n_W 6, n_T 4, n_L 2
    # nominal 1 - 11*4/88 = 1/2; ordinal d(T,W) 25, d(L,T) 9, d(L,W) 64: 1 - 11*100/2880 = 89/144
    agreement = entry["agreement"]
    assert agreement["cohen_kappa"] == pytest.approx(0.5)
    assert agreement["krippendorff_alpha_nominal"] == pytest.approx(0.5)
    assert agreement["krippendorff_alpha_ordinal"] == pytest.approx(89 / 144)
    for label in ("win", "tie", "lose"):
        low, high = entry["intervals"][label]
        assert 0 <= low <= entry["rates"][label] <= high <= 1 and high > low
    assert ab.import_sheets([sheet], key_path, resamples=500, seed=3)["criteria"][0]["intervals"] == entry["intervals"]  # seeded
    assert ab.import_sheets([sheet], key_path, resamples=0)["criteria"][0]["intervals"] == {}
    png, pdf = (sheet.parent / "filled.ab.png"), (sheet.parent / "filled.ab.pdf")
    assert result["figure"] == [str(png), str(pdf)]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    assert result["labels"] == ["modelx", "modely"] and result["run_a"]["run_id"] == "run-alpha"


def test_rates_are_unblinded_not_read_off_the_sheet(exported, tmp_path):
    """A rater who always prefers run A writes win or lose depending on the row's order: A still wins 100%."""
    sheet, key_path, key = exported
    target = fill_xlsx(sheet, tmp_path / "a.xlsx", key, {f"{PREFERRED} [rater 1]": ["win"] * 6})
    assert len({load_workbook(target)["ratings"].cell(row=r, column=5).value for r in range(2, 8)}) == 2
    entry = ab.import_sheets([target], key_path)["criteria"][0]
    assert entry["rates"] == {"win": 1.0, "tie": 0.0, "lose": 0.0} and entry["raters"] == ["rater 1"]
    assert "cohen_kappa" not in entry["agreement"] and entry["agreement"]["raters"] == 1


def test_several_copies_are_several_raters(exported, tmp_path):
    sheet, key_path, key = exported
    alice = fill_xlsx(sheet, tmp_path / "alice.xlsx", key, {f"{PREFERRED} [rater 1]": R1})
    bob = fill_xlsx(sheet, tmp_path / "bob.xlsx", key, {f"{PREFERRED} [rater 1]": R2})
    result = ab.import_sheets([alice, bob], key_path)
    entry = result["criteria"][0]
    assert [r["name"] for r in result["raters"]] == ["alice.xlsx:rater 1", "bob.xlsx:rater 1"]
    assert entry["rates"] == pytest.approx({"win": 0.5, "tie": 1 / 3, "lose": 1 / 6})
    assert entry["agreement"]["cohen_kappa"] == pytest.approx(0.5)
    assert result["figure"][0].endswith("alice.ab.png")
    # raters who renamed their label: plain names
    edit_xlsx(bob, "E1", f"{PREFERRED} [bob]")
    assert [r["name"] for r in ab.import_sheets([alice, bob], key_path)["raters"]] == ["rater 1", "bob"]
    # the same copy twice (by path, or copied under another name) is refused
    refused([alice, alice], key_path, "the same sheet is given twice")
    (tmp_path / "alice-copy.xlsx").write_bytes(alice.read_bytes())
    refused([alice, tmp_path / "alice-copy.xlsx"], key_path, "repeats the ratings of")


def test_import_refusals_name_the_cells(filled, tmp_path):
    sheet, key_path, key = filled
    original = sheet.read_bytes()

    def fresh():
        sheet.write_bytes(original)
        return sheet

    edit_xlsx(fresh(), "E3", "maybe")
    refused([sheet], key_path, f"{sheet}!E3: 'maybe' is not win/tie/lose", "nothing imported")
    edit_xlsx(fresh(), "C4", "a better reply")
    refused([sheet], key_path, f"{sheet}!C4: the response 1 of row R003 differs from the export")
    edit_xlsx(fresh(), "B2", "Client: something else")
    refused([sheet], key_path, f"{sheet}!B2: the context of row R001 differs")
    edit_xlsx(fresh(), "A5", "R999")
    refused([sheet], key_path, f"{sheet}!A5: row id 'R999' is not in the key", "row(s) R004 of the export are missing")
    edit_xlsx(fresh(), "F7", None)
    refused([sheet], key_path, f"{sheet}!F7: empty; rater 'rater 2' must rate every row")
    edit_xlsx(fresh(), "C1", "response A")
    refused([sheet], key_path, f"{sheet}!C1: header 'response A' should be 'response 1'")
    edit_xlsx(fresh(), "F1", "Empathy [rater 2]")
    refused([sheet], key_path, f"{sheet}!F1: header 'Empathy [rater 2]' should be")

    workbook = load_workbook(fresh())  # a duplicated row, and a deleted one
    rows = workbook["ratings"]
    for col in range(1, 7):
        rows.cell(row=8, column=col, value=rows.cell(row=3, column=col).value)
    workbook.save(sheet)
    refused([sheet], key_path, f"{sheet}!A8: row R002 appears again (first at row 3)")
    workbook = load_workbook(fresh())
    workbook["ratings"].delete_rows(4)
    workbook.save(sheet)
    refused([sheet], key_path, "row(s) R003 of the export are missing")

    several = load_workbook(fresh())  # every problem of the sheet is listed in one line
    several["ratings"]["E2"], several["ratings"]["F3"], several["ratings"]["D6"] = "good", "Winner", "edited"
    several.save(sheet)
    message = refused([sheet], key_path, "E2: 'good'", "F3: 'Winner'", "D6: the response 2 of row R005")

    # sorting rows is allowed, and so are upper-case verdicts and stray spaces
    workbook = load_workbook(fresh())
    rows = workbook["ratings"]
    values = [[c.value for c in row] for row in rows.iter_rows(min_row=2)]
    for r, row in enumerate(reversed(values), start=2):
        for c, value in enumerate(row, start=1):
            rows.cell(row=r, column=c, value=value.upper() + " " if c >= 5 else value)
    workbook.save(sheet)
    assert ab.import_sheets([sheet], key_path)["criteria"][0]["rates"] == pytest.approx({"win": 0.5, "tie": 1 / 3, "lose": 1 / 6})
    assert message.count(";") >= 2


def test_import_refusals_of_files_and_keys(exported, runs, tmp_path):
    sheet, key_path, key = exported
    refused([sheet], key_path, "no ratings yet")  # the blank export
    other = ab.export(*runs, tmp_path / "other.xlsx", n=6, seed=2)
    filled_other = fill_xlsx(other.sheet, tmp_path / "other-filled.xlsx", other.key, {f"{PREFERRED} [rater 1]": R1})
    refused([filled_other], key_path, "rows differ from the export; is the sheet from another export")  # rows of another draw
    (tmp_path / "broken.xlsx").write_text("not a workbook")
    refused([tmp_path / "broken.xlsx"], key_path, "not a readable .xlsx workbook")
    bad_key = tmp_path / "bad.key.json"
    bad_key.write_text('{"kind": "something else"}')
    with pytest.raises(HarnessError, match="not a key written by `harness ab export`"):
        ab.import_sheets([sheet], bad_key)
    with pytest.raises(HarnessError, match="no such key file"):
        ab.import_sheets([sheet], tmp_path / "missing.json")
    same_seed_other_runs = ab.export(runs[1], runs[0], tmp_path / "swapped.xlsx", n=6, seed=1)  # same rows, other texts
    swapped = fill_xlsx(same_seed_other_runs.sheet, tmp_path / "swapped-filled.xlsx", same_seed_other_runs.key, {f"{PREFERRED} [rater 1]": R1})
    refused([swapped], key_path, "6 of 6 rows differ from the export; is the sheet from another export")


def test_csv_round_trip(runs, tmp_path):
    sheet = tmp_path / "sheet.csv"
    key = ab.export(*runs, sheet, n=6, seed=1, raters=1).key
    assert sheet.read_bytes()[:3] == b"\xef\xbb\xbf"  # BOM: Excel reads UTF-8
    rows = read_csv(sheet)
    assert rows[0] == ["row", "context", "response 1", "response 2", f"{PREFERRED} [rater 1]"]
    assert any("ça va pas" in row[1] for row in rows[1:]) and any(c.startswith('=SUM(1) "quoted", line\nbreak') for row in rows[1:] for c in row)
    for i, row in enumerate(rows[1:]):
        row[4] = sheet_value(key, i, R1[i])
    write_csv(sheet, rows)
    entry = ab.import_sheets([sheet], sheet.with_name("sheet.csv.key.json"))["criteria"][0]
    assert entry["rates"] == pytest.approx({"win": 4 / 6, "tie": 1 / 6, "lose": 1 / 6})
    rows[3][4] = "draw"
    rows[2][2] = rows[2][2] + " "
    write_csv(sheet, rows)
    refused([sheet], sheet.with_name("sheet.csv.key.json"), f"{sheet}!E4: 'draw' is not win/tie/lose", f"{sheet}!C3: the response 1 of row R002")


# --------------------------------------------------------------------------- judge


class SpyModel(ScriptedModel):
    """Scripted, and keeps every request for the test to read."""

    name = "ab-spy"
    seen: list = []

    def generate(self, requests):
        SpyModel.seen.extend(requests)
        return super().generate(requests)


def test_parse_verdict():
    cases = {
        "Response 1 comforts better.\nVerdict: win": "win", "Verdict: **lose**": "lose", "tie": "tie", "**Tie**.": "tie",
        "<think>win? lose?</think>Final answer: tie": "tie", "Response 2 wins.": "lose", "Response 1 is clearly better.": "win",
        "The verdict is: LOSE": "lose", "hard to say": None, "win or lose": None, "": None,
        "Response 1 is better? No, Response 2 is better.": None, "Not a tie.\nlose": "lose",
    }
    for text, want in cases.items():
        assert ab.parse_verdict(text) == want, text


def test_judge_fills_a_block_through_the_cache(runs, tmp_path):
    registry.models.register("ab-spy", SpyModel)
    SpyModel.seen = []
    sheet = tmp_path / "t.xlsx"
    key = ab.export(*runs, sheet, n=4, seed=1, criteria_text="thinking", raters=1).key
    key_path = tmp_path / "t.xlsx.key.json"
    script = tmp_path / "script.json"
    # per row: Coherence then Usefulness; row 2's Coherence answer cannot be read
    script.write_text(json.dumps(["Verdict: win", "Verdict: tie", "no idea", "Response 2 is better", "lose", "Verdict: win", "tie", "tie"]))
    human = fill_xlsx(sheet, tmp_path / "human.xlsx", key, {"Coherence [rater 1]": ["win", "tie", "lose", "tie"],
                                                           "Usefulness [rater 1]": ["tie", "lose", "win", "tie"]})
    out = tmp_path / "judged.xlsx"
    result = ab.judge(human, key_path, ModelSpec("ab-spy", {"outputs": str(script)}), out)
    assert (result.filled, result.unparsed, result.model_calls, result.cache_hits) == (7, 1, 8, 0)
    # the judge saw the context and both sides in the sheet's order, with the criterion's question
    first = SpyModel.seen[0].messages[-1].content
    rows = list(load_workbook(sheet)["ratings"].iter_rows(values_only=True))
    assert rows[1][1] in first and first.index(rows[1][2]) < first.index(rows[1][4]) and "Thinking process 1:" in first
    assert "logical and relevant to the conversational context" in first and "Verdict: win|tie|lose" in first
    assert "Usefulness" in SpyModel.seen[1].messages[-1].content
    judged = list(load_workbook(out)["ratings"].iter_rows(values_only=True))
    assert judged[0][-2:] == ("Coherence [llm-judge]", "Usefulness [llm-judge]")
    assert [r[-2:] for r in judged[1:]] == [("win", "tie"), (None, "lose"), ("lose", "win"), ("tie", "tie")]
    assert [r[-4:-2] for r in judged[1:]] == [r[-2:] for r in list(load_workbook(human)["ratings"].iter_rows(values_only=True))[1:]]
    assert load_workbook(out)["ratings"].data_validations.dataValidation  # drop-downs kept
    log = ab.JudgeLog.model_validate_json((tmp_path / "judged.xlsx.judge.json").read_text())
    assert log.unparsed == 1 and log.answers[2].raw == "no idea" and log.answers[2].verdict is None

    # import: the humans' rates, the judge beside them (its empty cell is allowed and counted)
    result_import = ab.import_sheets([out], key_path)
    coherence, usefulness = result_import["criteria"]
    assert coherence["raters"] == ["rater 1"] and coherence["rates"] == pytest.approx({"win": 0.25, "tie": 0.5, "lose": 0.25})
    (judge,) = coherence["judges"]
    assert judge["name"] == "llm-judge" and judge["unparsed"] == 1
    # the judge in run A's terms, on rows 1, 3, 4 (row 2 unparsed)
    a_first = [r.response_1 == "a" for r in key.rows]
    judge_a = [v if first or v is None else FLIP[v] for v, first in zip(["win", None, "lose", "tie"], a_first)]
    human_a = ["win", "tie", "lose", "tie"]
    codes = {"lose": 0, "tie": 1, "win": 2, None: np.nan}
    want = cohen_kappa([codes[v] for v in judge_a], [codes[v] for v in human_a], 3)
    assert judge["cohen_kappa_vs"]["rater 1"] == pytest.approx(want)
    rated = [v for v in judge_a if v]
    assert judge["rates"] == pytest.approx({k: rated.count(k) / 3 for k in ("win", "tie", "lose")})
    assert len(usefulness["judges"]) == 1 and usefulness["judges"][0]["unparsed"] == 0

    # the same judging again is answered by the response cache
    again = ab.judge(human, key_path, ModelSpec("ab-spy", {"outputs": str(script)}), tmp_path / "again.xlsx")
    assert (again.model_calls, again.cache_hits) == (0, 8)
    # a block already rated by that name is refused; an empty one of that name is filled in place
    with pytest.raises(HarnessError, match="already has ratings"):
        ab.judge(out, key_path, ModelSpec("ab-spy", {"outputs": str(script)}), tmp_path / "twice.xlsx")
    renamed = load_workbook(sheet)
    renamed["ratings"]["G1"], renamed["ratings"]["H1"] = "Coherence [llm-judge]", "Usefulness [llm-judge]"
    renamed.save(tmp_path / "slot.xlsx")
    ab.judge(tmp_path / "slot.xlsx", key_path, ModelSpec("ab-spy", {"outputs": str(script)}), tmp_path / "slot-judged.xlsx")
    assert list(load_workbook(tmp_path / "slot-judged.xlsx")["ratings"].iter_rows(values_only=True))[0][-2:] == ("Coherence [llm-judge]", "Usefulness [llm-judge]")
    assert load_workbook(tmp_path / "slot-judged.xlsx")["ratings"].max_column == 8


def test_judge_both_orders_turns_position_bias_into_ties(runs, tmp_path):
    registry.models.register("ab-spy", SpyModel)
    SpyModel.seen = []
    sheet = tmp_path / "s.csv"
    ab.export(*runs, sheet, n=2, seed=1, raters=1)
    script = tmp_path / "script.json"
    # row 1: win in order 1-2 and lose in order 2-1 = consistent win; row 2: win both times = position bias -> tie
    script.write_text(json.dumps(["Verdict: win", "Verdict: lose", "Verdict: win", "Verdict: win"]))
    ab.judge(sheet, tmp_path / "s.csv.key.json", ModelSpec("ab-spy", {"outputs": str(script)}), tmp_path / "j.csv", both_orders=True)
    rows = read_csv(tmp_path / "j.csv")
    assert [r[-1] for r in rows[1:]] == ["win", "tie"] and rows[0][-1] == f"{PREFERRED} [llm-judge]"
    first, swapped = SpyModel.seen[0].messages[-1].content, SpyModel.seen[1].messages[-1].content
    assert first.index(rows[1][2]) < first.index(rows[1][3]) and swapped.index(rows[1][3]) < swapped.index(rows[1][2])


def test_judge_refusals(exported, tmp_path):
    sheet, key_path, _ = exported
    with pytest.raises(HarnessError, match="unknown model 'no-such-judge'"):
        ab.judge(sheet, key_path, ModelSpec("no-such-judge", {}), tmp_path / "j.xlsx")
    with pytest.raises(HarnessError, match="bad --judge-args"):
        ab.judge(sheet, key_path, ModelSpec("scripted", {"temperature": 0}), tmp_path / "j.xlsx")
    with pytest.raises(HarnessError, match="--rater-name"):
        ab.judge(sheet, key_path, ModelSpec("scripted", {"default": "tie"}), tmp_path / "j.xlsx", rater="a [b]")
    edit_xlsx(sheet, "C2", "edited")
    with pytest.raises(HarnessError, match=r"C2: the response 1 of row R001 differs"):
        ab.judge(sheet, key_path, ModelSpec("scripted", {"default": "tie"}), tmp_path / "j.xlsx")
    assert not (tmp_path / "j.xlsx").exists()


# --------------------------------------------------------------------------- the command line


def test_cli_export_import_judge(runs, tmp_path):
    runner = CliRunner()
    a, b = runs
    sheet = tmp_path / "cli.xlsx"
    done = runner.invoke(main, ["ab", "export", "--run", str(a), "--run", str(b), "--n", "6", "--seed", "1", "--out", str(sheet)])
    assert done.exit_code == 0, done.output
    assert "6 rows (drawn from 8 shared samples, seed 1)" in done.output and "keep it from the raters" in done.output
    key_path = tmp_path / "cli.xlsx.key.json"
    filled = fill_xlsx(sheet, tmp_path / "cli-filled.xlsx", key_of(key_path), {f"{PREFERRED} [rater 1]": R1, f"{PREFERRED} [rater 2]": R2})
    done = runner.invoke(main, ["ab", "import", str(filled), "--key", str(key_path), "--out", str(tmp_path / "fig"), "--label-a", "FIRES"])
    assert done.exit_code == 0, done.output
    assert f"{PREFERRED}: win  50.0%" in done.output and "Cohen's kappa 0.500" in done.output and "ordinal 0.618" in done.output
    assert "A = FIRES" in done.output and (tmp_path / "fig.png").exists() and (tmp_path / "fig.pdf").exists()
    as_json = json.loads(runner.invoke(main, ["ab", "import", str(filled), "--key", str(key_path), "--json"]).output)
    assert as_json["criteria"][0]["counts"] == {"win": 6, "tie": 4, "lose": 2}
    done = runner.invoke(main, ["ab", "judge", str(filled), "--key", str(key_path), "--judge", "scripted",
                                "--judge-args", "default=Verdict: tie", "--out", str(tmp_path / "judged.xlsx")])
    assert done.exit_code == 0, done.output
    assert "6 cells filled by llm-judge, 0 unparsed" in done.output
    done = runner.invoke(main, ["ab", "import", str(tmp_path / "judged.xlsx"), "--key", str(key_path)])
    assert done.exit_code == 0 and "judge llm-judge: win   0.0%" in done.output and "tie 100.0%" in done.output, done.output
    # user errors: exit 2, one line
    edit_xlsx(filled, "E2", "maybe")
    done = runner.invoke(main, ["ab", "import", str(filled), "--key", str(key_path)])
    assert done.exit_code == 2 and done.output.count("\n") == 1 and f"{filled}!E2: 'maybe' is not win/tie/lose" in done.output
    done = runner.invoke(main, ["ab", "export", "--run", str(a), "--out", str(tmp_path / "x.xlsx")])
    assert done.exit_code == 2 and "give exactly two runs" in done.output

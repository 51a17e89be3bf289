"""`harness train compeer-annotate`: CER annotation sheets - export, fill as two raters, import (labels, final
labels, agreement), adjudicate, refusals, and the LLM rater."""
import csv
import json

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from baselines.compeer import annotate as an
from baselines.compeer import data
from baselines.compeer.data import CerRow
from harness import registry
from harness.cli import main
from harness.contract import Turn
from harness.errors import HarnessError
from harness.lifecycle import ModelSpec

T, F = True, False
SHOWN = dict(zip(("model_better", "original_better", "both_good", "neither"), an.SHOWN))
# the two raters' labels (model-relative preferences) of rows d1..d4, hand-chosen:
#   steps: step 1 agrees everywhere, step 2 differs on d2, step 3 on d3; the preference differs on d2 and d4
R1 = {"steps": [[T, T, T], [T, F, T], [F, F, T], [T, T, F]], "preference": ["model_better", "original_better", "both_good", "neither"]}
R2 = {"steps": [[T, T, T], [T, T, T], [F, F, F], [T, T, F]], "preference": ["model_better", "model_better", "both_good", "original_better"]}
HEADER = ["row", "context", "reasoning step 1", "reasoning step 2", "reasoning step 3", "response 1", "response 2"]


def cer_row(i):
    return CerRow(id=f"esconv/train/d{i:04d}/t02", source="esconv", dialogue=f"d{i:04d}", round=2,
                  history=[Turn(speaker="Client", text=f"I failed my exam, number {i}."), Turn(speaker="Therapist", text="That sounds hard."),
                           Turn(speaker="Client", text="Ça va pas, \"again\".")],
                  steps=[f"history {i}", f"emotion {i}: sad, 4", f"strategy {i}: reflection"],
                  response=f"=It makes sense you feel low ({i}).", original=f"What happened next, {i}?")


@pytest.fixture
def cer(tmp_path):
    folder = tmp_path / "cer"
    folder.mkdir()
    data.write_rows(folder / data.ROWS, [cer_row(i) for i in range(1, 5)])
    return folder


@pytest.fixture
def exported(cer, tmp_path):
    (tmp_path / "sheets").mkdir()
    result = an.export(cer, tmp_path / "sheets" / "sheet.xlsx", seed=0)
    return result.sheet, result.key_path, result.key


def key_of(path):
    return an.CerKey.model_validate_json(path.read_text())


def display(key, i, preference):
    """What a rater writes for a model-relative preference on key row i (its display order)."""
    if key.rows[i].response_1 == "original":
        preference = {"model_better": "original_better", "original_better": "model_better"}.get(preference, preference)
    return SHOWN[preference]


def cells_of(key, labels, rows=None):
    """row id -> [Step 1, Step 2, Step 3, Preference] cells for one rater; labels: {"steps": [...], "preference": [...]}."""
    out = {}
    by_id = {f"esconv/train/d{i:04d}/t02": i - 1 for i in range(1, 5)}
    for k, key_row in enumerate(key.rows):
        i = by_id[key_row.id]
        out[key_row.row] = [str(s) for s in labels["steps"][i]] + [display(key, k, labels["preference"][i])]
    return out


def fill_xlsx(source, target, key, raters, rename=None):
    """raters: label -> {row id -> four cells}; rename: exported label -> the rater's own name, first."""
    workbook = load_workbook(source)
    sheet = workbook["ratings"]
    for cell in sheet[1]:
        for old, new in (rename or {}).items():
            if cell.value and cell.value.endswith(f"[{old}]"):
                cell.value = cell.value.replace(f"[{old}]", f"[{new}]")
    header = [c.value for c in sheet[1]]
    row_of = {sheet.cell(row=r, column=1).value: r for r in range(2, sheet.max_row + 1)}
    for label, cells in raters.items():
        for row_id, values in cells.items():
            for criterion, value in zip(an.CRITERIA, values):
                if value is not None:
                    sheet.cell(row=row_of[row_id], column=header.index(f"{criterion} [{label}]") + 1, value=value)
    workbook.save(target)
    return target


def edit_xlsx(path, cell, value):
    workbook = load_workbook(path)
    workbook["ratings"][cell] = value
    workbook.save(path)


def snapshot(*folders):
    return {str(p): p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(call, folders, *needles):
    before = snapshot(*folders)
    with pytest.raises(HarnessError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    assert snapshot(*folders) == before, "a refused import wrote something"
    return message


@pytest.fixture
def filled(exported, tmp_path):
    sheet, key_path, key = exported
    target = fill_xlsx(sheet, tmp_path / "sheets" / "filled.xlsx", key, {"rater 1": cells_of(key, R1), "rater 2": cells_of(key, R2)})
    return target, key_path, key


# --------------------------------------------------------------------------- export


def test_export_shows_rows_in_a_seeded_order_with_drop_downs(cer, exported, tmp_path):
    sheet, key_path, key = exported
    assert key_path == sheet.with_name("sheet.xlsx.key.json") and key.purpose == "annotate" and len(key.rows) == 4
    assert {r.response_1 for r in key.rows} == {"model", "original"}  # seed 0 puts each first on some row
    workbook = load_workbook(sheet)
    assert workbook.sheetnames == ["ratings", "instructions"]
    rows = list(workbook["ratings"].iter_rows(values_only=True))
    assert list(rows[0]) == HEADER + [f"{c} [rater {k}]" for k in (1, 2) for c in ("Step 1", "Step 2", "Step 3", "Preference")]
    for key_row, row in zip(key.rows, rows[1:]):
        source = next(r for r in data.read_rows(cer)[1] if r.id == key_row.id)
        assert row[1] == 'Client: I failed my exam, number %d.\nTherapist: That sounds hard.\nClient: Ça va pas, "again".' % int(source.dialogue[1:])
        assert list(row[2:5]) == source.steps
        shown = (source.response, source.original) if key_row.response_1 == "model" else (source.original, source.response)
        assert row[5:7] == shown and all(v is None for v in row[7:])
    validations = {v.formula1: str(v.sqref) for v in workbook["ratings"].data_validations.dataValidation}
    assert validations == {'"True,False"': "H2:H5 I2:I5 J2:J5 L2:L5 M2:M5 N2:N5",
                           '"Response 1 is better,Response 2 is better,Both are almost equally good,Neither is acceptable"': "K2:K5 O2:O5"}
    notes = [r[0] for r in workbook["instructions"].iter_rows(values_only=True)]
    assert any("True when that reasoning step is correct" in (n or "") for n in notes) and "  Neither is acceptable" in notes
    text = "".join(str(v) for row in rows for v in row)
    assert "esconv/train" not in text  # the sheet names rows by R001..., the key ties them to the data
    # the same seed, the same order; another seed another
    again = an.export(cer, tmp_path / "again.xlsx", seed=0).key
    other = an.export(cer, tmp_path / "other.xlsx", seed=3).key
    assert [r.response_1 for r in again.rows] == [r.response_1 for r in key.rows] != [r.response_1 for r in other.rows]


def test_export_csv_and_refusals(cer, tmp_path):
    result = an.export(cer, tmp_path / "s.csv", raters=1)
    assert result.sheet.read_bytes()[:3] == b"\xef\xbb\xbf" and result.instructions.read_text().startswith("COMPEER annotation sheet")
    with open(result.sheet, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == HEADER + ["Step 1 [rater 1]", "Step 2 [rater 1]", "Step 3 [rater 1]", "Preference [rater 1]"] and len(rows) == 5
    with pytest.raises(HarnessError, match="exists"):
        an.export(cer, tmp_path / "s.csv")
    with pytest.raises(HarnessError, match="no disagreement to adjudicate"):
        an.export(cer, tmp_path / "adj.xlsx", adjudicate=True)
    with pytest.raises(HarnessError, match="no CER data here"):
        an.export(tmp_path / "nowhere", tmp_path / "n.xlsx")
    assert not (tmp_path / "adj.xlsx").exists() and not (tmp_path / "n.xlsx.key.json").exists()


# --------------------------------------------------------------------------- import, agreement, adjudication


def annotations(folder):
    return {r.id.split("/")[2]: r.annotations for r in data.read_rows(folder)[1]}


def test_two_raters_labels_finals_and_agreement(cer, filled):
    sheet, key_path, key = filled
    result = an.import_sheets([sheet], key_path, cer)
    got = annotations(cer)
    for i, name in enumerate(["d0001", "d0002", "d0003", "d0004"]):
        assert got[name].steps == {"rater 1": R1["steps"][i], "rater 2": R2["steps"][i]}
        assert got[name].preference == {"rater 1": R1["preference"][i], "rater 2": R2["preference"][i]}
    # agreeing raters give the final label; a disagreement leaves it None (final_steps needs all three steps)
    assert [(got[n].final_steps, got[n].final_preference) for n in ("d0001", "d0002", "d0003", "d0004")] == [
        ([T, T, T], "model_better"), (None, None), (None, "both_good"), ([T, T, F], None)]
    by = {e["criterion"]: e for e in result["criteria"]}
    assert list(by) == ["Step 1", "Step 2", "Step 3", "Steps (pooled)", "Preference"]
    # step 1: T T F T twice: p_o 1, kappa 1, alpha 1
    assert by["Step 1"]["agreement"] == pytest.approx({"raters": 2, "percent_agreement": 1.0, "krippendorff_alpha_nominal": 1.0, "cohen_kappa": 1.0})
    # step 2: T F F T vs T T F T: p_o 3/4, p_e (2*3 + 2*1)/16 = 1/2, kappa 1/2;
    # coincidences TT 4, FF 2, TF = FT 1, n_T 5, n_F 3, n 8: alpha 1 - 7*2/(2*5*3) = 8/15. Step 3 the same by symmetry.
    for step in ("Step 2", "Step 3"):
        assert by[step]["agreement"] == pytest.approx({"raters": 2, "percent_agreement": 0.75, "krippendorff_alpha_nominal": 8 / 15, "cohen_kappa": 0.5})
    # pooled: 10 of 12 agree; marginals T 8 F 4 for both: p_e 80/144, kappa (30/36 - 20/36)/(16/36) = 5/8;
    # coincidences TT 14, FF 6, TF = FT 2, n_T 16, n_F 8, n 24: alpha 1 - 23*4/(2*16*8) = 41/64
    assert by["Steps (pooled)"]["agreement"] == pytest.approx({"raters": 2, "percent_agreement": 10 / 12, "krippendorff_alpha_nominal": 41 / 64,
                                                               "cohen_kappa": 5 / 8})
    # preference (model-relative): mb ob bg n vs mb mb bg ob: p_o 1/2; p_e (1*2 + 1*1 + 1*1)/16 = 1/4, kappa 1/3;
    # coincidences mb-mb 2, bg-bg 2, mb-ob 1+1, ob-n 1+1; n_mb 3, n_ob 2, n_bg 2, n_n 1: alpha 1 - 7*4/(64 - 18) = 9/23
    assert by["Preference"]["agreement"] == pytest.approx({"raters": 2, "percent_agreement": 0.5, "krippendorff_alpha_nominal": 9 / 23,
                                                           "cohen_kappa": 1 / 3})
    assert result["finals"] == {"steps": 2, "preference": 2, "preference_counts": {"model_better": 1, "original_better": 0, "both_good": 1, "neither": 0},
                                "disputed_rows": 3}
    # importing the same sheet again changes nothing
    before = (cer / data.ROWS).read_bytes()
    an.import_sheets([sheet], key_path, cer)
    assert (cer / data.ROWS).read_bytes() == before


def test_preferences_are_unblinded_through_the_order(cer, exported, tmp_path):
    """A rater who always picks Response 1 prefers the model on some rows and the original on the others."""
    sheet, key_path, key = exported
    manifest = data.CerManifest(teacher={"model": "scripted"}, prompt_sha256="0" * 64, config={}, data={}, started_at="2025-01-01T00:00:00+00:00")
    (cer / data.MANIFEST).write_text(manifest.model_dump_json())
    always_first = {r.row: ["True", "True", "True", "Response 1 is better"] for r in key.rows}
    target = fill_xlsx(sheet, tmp_path / "sheets" / "first.xlsx", key, {"alice": always_first}, rename={"rater 1": "alice"})
    result = an.import_sheets([target], key_path, cer, tmp_path / "out")
    got = {r.id: r.annotations for r in data.read_rows(tmp_path / "out")[1]}
    for key_row in key.rows:
        assert got[key_row.id].preference == {"alice": "model_better" if key_row.response_1 == "model" else "original_better"}
        assert got[key_row.id].final_preference is None  # one rater is no consensus
    assert all(e["agreement"] == {"raters": 1} for e in result["criteria"])
    assert data.read_rows(cer)[1][0].annotations.preference == {}  # --out leaves the source alone
    assert data.read_rows(tmp_path / "out")[0] == manifest  # and takes its manifest along
    with pytest.raises(HarnessError, match="exists; import into the data folder itself"):
        an.import_sheets([target], key_path, cer, tmp_path / "out")


def test_adjudication_sheet_asks_exactly_the_disagreements(cer, filled, tmp_path):
    sheet, key_path, _ = filled
    an.import_sheets([sheet], key_path, cer)
    adj = an.export(cer, tmp_path / "sheets" / "adj.xlsx", adjudicate=True, seed=1)
    key = adj.key
    assert key.purpose == "adjudicate" and key.rater_labels == ["rater 3"] and key.adjudicating == ["rater 1", "rater 2"]
    asked = {r.id.split("/")[2]: r.asked for r in key.rows}
    assert asked == {"d0002": ["Step 2", "Preference"], "d0003": ["Step 3"], "d0004": ["Preference"]}
    workbook = load_workbook(adj.sheet)
    rows = list(workbook["ratings"].iter_rows(values_only=True))
    assert rows[0][-4:] == ("Step 1 [rater 3]", "Step 2 [rater 3]", "Step 3 [rater 3]", "Preference [rater 3]")
    for key_row, row in zip(key.rows, rows[1:]):
        assert [c for c, v in zip(an.CRITERIA, row[-4:]) if v != "(not asked)"] == key_row.asked
        assert all(v is None for v in row[-4:] if v != "(not asked)")
    validations = {v.formula1: set(str(v.sqref).split()) for v in workbook["ratings"].data_validations.dataValidation}
    row_of = {r.id.split("/")[2]: i for i, r in enumerate(key.rows, start=2)}
    assert validations['"True,False"'] == {f"I{row_of['d0002']}", f"J{row_of['d0003']}"}
    assert len(validations) == 2 and len(next(v for k, v in validations.items() if "Neither" in k)) == 2
    # the third rater: d2 step 2 True and the model's response better (sides with rater 2 twice), d3 step 3 False
    # (with rater 2), d4 both good (a third opinion: still no consensus)
    third = {"steps": [[None] * 3, [None, T, None], [None, None, F], [None] * 3], "preference": [None, "model_better", None, "both_good"]}
    cells = {r.row: v for r, v in zip(key.rows, [None] * 3)}
    by_id = {f"esconv/train/d{i:04d}/t02": i - 1 for i in range(1, 5)}
    for k, key_row in enumerate(key.rows):
        i = by_id[key_row.id]
        cells[key_row.row] = [None if s is None else str(s) for s in third["steps"][i]] + [
            None if third["preference"][i] is None else display(key, k, third["preference"][i])]
    done = fill_xlsx(adj.sheet, tmp_path / "sheets" / "adj-filled.xlsx", key, {"rater 3": cells})
    result = an.import_sheets([done], adj.key_path, cer)
    got = annotations(cer)
    assert got["d0002"].steps["rater 3"] == [None, T, None] and got["d0002"].preference["rater 3"] == "model_better"
    assert (got["d0002"].final_steps, got["d0002"].final_preference) == ([T, T, T], "model_better")
    assert (got["d0003"].final_steps, got["d0003"].final_preference) == ([F, F, F], "both_good")
    assert (got["d0004"].final_steps, got["d0004"].final_preference) == ([T, T, F], None)
    assert (got["d0001"].final_steps, got["d0001"].final_preference) == ([T, T, T], "model_better")  # not in the sheet: untouched
    assert result["adjudicated"] == {"Step 1": 0, "Step 2": 1, "Step 3": 1, "Preference": 2}
    assert result["finals"]["disputed_rows"] == 1 and "criteria" not in result
    # an adjudicator's cell left empty, or a value in a cell not asked, is refused
    edit_xlsx(done, f"I{row_of['d0002']}", None)
    refused(lambda: an.import_sheets([done], adj.key_path, cer), [cer], f"I{row_of['d0002']}: empty; rater 'rater 3' must rate every row")
    edit_xlsx(done, f"I{row_of['d0002']}", "True")
    edit_xlsx(done, f"H{row_of['d0002']}", "False")
    refused(lambda: an.import_sheets([done], adj.key_path, cer), [cer], f"H{row_of['d0002']}: row {key.rows[row_of['d0002'] - 2].row} does not ask for Step 1")


def test_csv_round_trip(cer, tmp_path):
    result = an.export(cer, tmp_path / "sheets" / "s.csv", seed=2)
    key = result.key
    with open(result.sheet, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    one, two = cells_of(key, R1), cells_of(key, R2)
    for row in rows[1:]:
        row[7:11] = [v.upper() if v in ("True", "False") else v for v in one[row[0]]]  # case does not matter
        row[11:15] = two[row[0]]
    with open(result.sheet, "w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(rows)
    out = an.import_sheets([result.sheet], result.key_path, cer)
    assert {e["criterion"]: e["agreement"]["cohen_kappa"] for e in out["criteria"]} == pytest.approx(
        {"Step 1": 1.0, "Step 2": 0.5, "Step 3": 0.5, "Steps (pooled)": 5 / 8, "Preference": 1 / 3})
    assert annotations(cer)["d0004"].preference == {"rater 1": "neither", "rater 2": "original_better"}


# --------------------------------------------------------------------------- refusals


def test_import_refusals_are_one_line_and_write_nothing(cer, filled, tmp_path):
    sheet, key_path, key = filled
    original = sheet.read_bytes()
    folders = [cer, tmp_path / "sheets"]

    def fresh():
        sheet.write_bytes(original)
        return sheet

    def do():
        return an.import_sheets([sheet], key_path, cer)

    edit_xlsx(fresh(), "C3", "an edited step")
    refused(do, folders, f"{sheet}!C3: the reasoning step 1 of row R002 differs from the export", "nothing imported")
    edit_xlsx(fresh(), "F2", "a better reply")
    refused(do, folders, f"{sheet}!F2: the response 1 of row R001 differs")
    edit_xlsx(fresh(), "H4", "Maybe")
    refused(do, folders, f"{sheet}!H4: 'Maybe' is not True/False")
    edit_xlsx(fresh(), "K2", "Response 3 is better")
    refused(do, folders, f"{sheet}!K2: 'Response 3 is better' is not one of 'Response 1 is better', 'Response 2 is better'")
    edit_xlsx(fresh(), "O5", None)
    refused(do, folders, f"{sheet}!O5: empty; rater 'rater 2' must rate every row")
    workbook = load_workbook(fresh())  # a rater column deleted
    workbook["ratings"].delete_cols(14)
    workbook.save(sheet)
    refused(do, folders, f"{sheet}!N1: header 'Preference [rater 2]' should be 'Step 3 [<rater>]'")
    workbook = load_workbook(fresh())  # two blocks of one rater
    for cell, criterion in zip(("L1", "M1", "N1", "O1"), an.CRITERIA):
        workbook["ratings"][cell] = f"{criterion} [rater 1]"
    workbook.save(sheet)
    refused(do, folders, "rater 'rater 1' has two blocks in this sheet")
    fresh()
    # a wrong key: another export's (another seed), an A/B key, none
    other = an.export(cer, tmp_path / "other.xlsx", seed=8)  # 3 of the 4 rows in the other order
    refused(lambda: an.import_sheets([sheet], other.key_path, cer), folders, "rows differ from the export; is the sheet from another export")
    ab_key = tmp_path / "ab.key.json"
    ab_key.write_text(json.dumps({"kind": "esc-harness-ab-key"}))
    refused(lambda: an.import_sheets([sheet], ab_key, cer), folders, "not a key written by `harness train compeer-annotate export`")
    refused(lambda: an.import_sheets([sheet], tmp_path / "missing.json", cer), folders, "no such key file")
    # the same copy twice
    (tmp_path / "sheets" / "copy.xlsx").write_bytes(original)
    refused(lambda: an.import_sheets([sheet, tmp_path / "sheets" / "copy.xlsx"], key_path, cer), folders, "repeats the ratings of")
    # the data changed since the export
    rows = data.read_rows(cer)[1]
    rows[2] = rows[2].model_copy(update={"original": "something else"})
    data.write_rows(cer / data.ROWS, rows)
    refused(do, folders, f"row '{rows[2].id}'", "has another response")
    data.write_rows(cer / data.ROWS, [cer_row(i) for i in range(1, 5)])
    # a rater's earlier labels are not overwritten without --replace
    an.import_sheets([sheet], key_path, cer)
    changed = fill_xlsx(sheet, tmp_path / "sheets" / "changed.xlsx", key, {"rater 1": {key.rows[0].row: ["False", None, None, None]}})
    refused(lambda: an.import_sheets([changed], key_path, cer), folders, "already has other labels by 'rater 1'", "--replace")
    an.import_sheets([changed], key_path, cer, replace=True)
    assert annotations(cer)[key.rows[0].id.split("/")[2]].steps["rater 1"][0] is False


# --------------------------------------------------------------------------- the LLM rater


def test_judge_fills_a_block_and_counts_the_unparsed(cer, filled, tmp_path):
    sheet, key_path, key = filled
    script = tmp_path / "script.json"
    # per row: Step 1, Step 2, Step 3, Preference; row 2's Step 3 answer cannot be read
    answers = ["Verdict: True", "Verdict: False", "True", "Verdict: 1",
               "Verdict: True", "Verdict: True", "I am not sure.", "Verdict: both",
               "Verdict: correct", "Verdict: incorrect", "False", "Verdict: Response 2",
               "Verdict: True", "Verdict: True", "Verdict: False", "neither"]
    script.write_text(json.dumps(answers))
    out = tmp_path / "sheets" / "judged.xlsx"
    result = an.judge(sheet, key_path, ModelSpec("scripted", {"outputs": str(script)}), out)
    assert (result.filled, result.unparsed, result.model_calls, result.cache_hits) == (15, 1, 16, 0)
    judged = list(load_workbook(out)["ratings"].iter_rows(values_only=True))
    assert judged[0][-4:] == ("Step 1 [llm-judge]", "Step 2 [llm-judge]", "Step 3 [llm-judge]", "Preference [llm-judge]")
    assert [r[-4:] for r in judged[1:]] == [("True", "False", "True", "Response 1 is better"), ("True", "True", None, "Both are almost equally good"),
                                           ("True", "False", "False", "Response 2 is better"), ("True", "True", "False", "Neither is acceptable")]
    assert len(load_workbook(out)["ratings"].data_validations.dataValidation) == 2
    log = an.CerJudgeLog.model_validate_json(out.with_name("judged.xlsx.judge.json").read_text())
    assert log.unparsed == 1 and log.answers[6].raw == "I am not sure." and log.answers[6].value is None
    # import: the judge is stored beside the people, compared with them, and does not vote
    report = an.import_sheets([out], key_path, cer)
    got = annotations(cer)
    row2 = key.rows[1].id.split("/")[2]
    assert got[row2].steps["llm-judge"] == [T, T, None]
    assert [(got[n].final_steps, got[n].final_preference) for n in ("d0001", "d0002", "d0003", "d0004")] == [
        ([T, T, T], "model_better"), (None, None), (None, "both_good"), ([T, T, F], None)]
    step3 = next(e for e in report["criteria"] if e["criterion"] == "Step 3")
    (judge_entry,) = step3["judges"]
    assert judge_entry["name"] == "llm-judge" and judge_entry["unparsed"] == 1
    assert step3["raters"] == ["rater 1", "rater 2"]
    # the same judging again is answered from the response cache
    again = an.judge(sheet, key_path, ModelSpec("scripted", {"outputs": str(script)}), tmp_path / "again.xlsx")
    assert (again.model_calls, again.cache_hits, again.unparsed) == (0, 16, 1)
    with pytest.raises(HarnessError, match="already has ratings"):
        an.judge(out, key_path, ModelSpec("scripted", {"default": "True"}), tmp_path / "twice.xlsx")


def test_judge_prompts_and_an_adjudication_sheet(cer, filled, tmp_path):
    sheet, key_path, _ = filled
    an.import_sheets([sheet], key_path, cer)
    adj = an.export(cer, tmp_path / "adj.csv", adjudicate=True)
    seen = []

    class Spy(an.CerJudge):
        def requests(self, item):
            asked = super().requests(item)
            seen.append((item.row, list(asked), asked))
            return asked

    grader = Spy(64, 0)
    result = an.ab.ask_judge(ModelSpec("scripted", {"default": "Verdict: False"}), grader,
                             [an.JudgeItem("R001", "Client: hi", ["a", "b", "c"], "reply-one", "reply-two", ["Step 2", "Preference"])], None, False)
    (_, aspects, asked), = seen
    assert aspects == ["Step 2", "Preference"]
    step, preference = asked["Step 2"].messages[-1].content, asked["Preference"].messages[-1].content
    assert "Step 1 (history analysis): a" in step and "Judge Step 2 (emotional state) only" in step and "Verdict: True|False" in step
    assert "reply-one" not in step and "Response 1:\nreply-one\n\nResponse 2:\nreply-two" in preference and "Step 1" not in preference and "Verdict: 1|2|both|neither" in preference
    assert result.graded[0].values == {"Step 2": "False", "Preference": None}
    # on an adjudication sheet the judge is asked only the disputed cells; the others stay "(not asked)"
    out = tmp_path / "adj-judged.csv"
    judged = an.judge(adj.sheet, adj.key_path, ModelSpec("scripted", {"default": "Verdict: True"}), out, rater="rater 3")
    assert judged.filled + judged.unparsed == 4 and judged.unparsed == 2  # the two preferences cannot be read from "True"
    with open(out, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows[0]) == 11 and [r[-4:-1].count("(not asked)") for r in rows[1:]] == [2, 2, 3]


# --------------------------------------------------------------------------- the command line


@pytest.fixture
def recipe():
    registry.recipes.register("compeer-annotate", an.compeer_annotate)
    yield
    registry.recipes._extra.pop("compeer-annotate", None)


def test_cli(cer, tmp_path, recipe):
    runner = CliRunner()
    sheet = tmp_path / "sheets" / "cli.xlsx"
    done = runner.invoke(main, ["train", "compeer-annotate", "export", str(cer), "--out", str(sheet), "--seed", "0"])
    assert done.exit_code == 0, done.output
    assert "4 rows, 2 rater block(s) (rater 1, rater 2)" in done.output and "keep it from the raters" in done.output
    key_path = sheet.with_name("cli.xlsx.key.json")
    key = key_of(key_path)
    filled = fill_xlsx(sheet, tmp_path / "sheets" / "cli-filled.xlsx", key, {"rater 1": cells_of(key, R1), "rater 2": cells_of(key, R2)})
    done = runner.invoke(main, ["train", "compeer-annotate", "judge", str(filled), "--key", str(key_path), "--judge", "scripted",
                                "--judge-args", "default=Verdict: True", "--out", str(tmp_path / "sheets" / "judged.xlsx")])
    assert done.exit_code == 0 and "12 cells filled by llm-judge, 4 unparsed" in done.output, done.output
    done = runner.invoke(main, ["train", "compeer-annotate", "import", str(tmp_path / "sheets" / "judged.xlsx"), "--key", str(key_path),
                                "--data", str(cer)])
    assert done.exit_code == 0, done.output
    assert "Step 2: agreement 75.0% on 4 items, Cohen's kappa 0.500, Krippendorff's alpha (nominal) 0.533" in done.output
    assert "judge llm-judge: unparsed 4" in done.output and "3 row(s) still disagree" in done.output
    as_json = json.loads(runner.invoke(main, ["train", "compeer-annotate", "import", str(filled), "--key", str(key_path),
                                              "--data", str(cer), "--json"]).output)
    assert as_json["finals"]["disputed_rows"] == 3 and as_json["criteria"][-1]["agreement"]["cohen_kappa"] == pytest.approx(1 / 3)
    done = runner.invoke(main, ["train", "compeer-annotate", "export", "--adjudicate", str(cer), "--out", str(tmp_path / "adj.xlsx")])
    assert done.exit_code == 0 and "3 rows with disagreements, 1 rater block(s) (rater 3)" in done.output, done.output
    edit_xlsx(filled, "H2", "yes")
    done = runner.invoke(main, ["train", "compeer-annotate", "import", str(filled), "--key", str(key_path), "--data", str(cer)])
    assert done.exit_code == 2 and done.output.count("\n") == 1 and "H2: 'yes' is not True/False" in done.output, done.output


def test_without_people_an_llm_judge_labels_the_data(cer, tmp_path):
    """--judges-label: the judge's block sets the final labels (a user with no raters can still train)."""
    (tmp_path / "sheets").mkdir()
    exported = an.export(cer, tmp_path / "sheets" / "solo.xlsx", raters=1, seed=0)
    script = tmp_path / "solo.json"
    key = exported.key
    # per row (in sheet order): Step 1-3 then the preference, said of Response 1
    answers = []
    for key_row in key.rows:
        first_is_model = key_row.response_1 == "model"
        answers += ["Verdict: True", "Verdict: True", "Verdict: False", "Verdict: Response 1" if first_is_model else "Verdict: Response 2"]
    script.write_text(json.dumps(answers))
    judged = an.judge(exported.sheet, exported.key_path, ModelSpec("scripted", {"outputs": str(script)}), tmp_path / "sheets" / "solo-judged.xlsx")
    assert judged.unparsed == 0
    an.import_sheets([tmp_path / "sheets" / "solo-judged.xlsx"], exported.key_path, cer)  # by default the judge does not vote
    assert all((a.final_steps, a.final_preference) == (None, None) for a in annotations(cer).values())
    report = an.import_sheets([tmp_path / "sheets" / "solo-judged.xlsx"], exported.key_path, cer, judges_label=True, replace=True)
    assert report["judges_label"] is True
    got = annotations(cer)
    assert all((a.final_steps, a.final_preference) == ([True, True, False], "model_better") for a in got.values())

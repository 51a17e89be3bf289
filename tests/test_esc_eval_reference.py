"""ESC-Eval published files: role cards, example transcripts and ESC-RANK scores."""
import json
from collections import Counter

import pytest

from harness.errors import HarnessError
from simulators.esc_eval_reference import (
    load_cards,
    load_reference_runs,
    mean_scores,
    read_scores,
    read_transcripts,
)


@pytest.fixture(scope="module")
def folder(data_root):
    return data_root / "esc-eval"


@pytest.mark.parametrize(
    "language, count, categories",
    [
        ("en", 331, {"家庭生活": 172, "工作学习": 87, "社会与其他": 72}),
        ("zh", 324, {"家庭生活": 215, "工作学习": 72, "社会与其他": 37}),
    ],
)
def test_card_counts(data_root, language, count, categories):
    cards = load_cards(data_root, language)
    assert len(cards) == count and len({c.id for c in cards}) == count
    assert Counter(c.category for c in cards) == categories
    assert all(c.language == language for c in cards)
    assert all(set(c.profile()) == {"age", "gender", "occupation", "problem"} for c in cards)


def test_card_sources_and_fields(folder):
    en, zh = load_cards(folder, "english"), load_cards(folder, "zh")  # the folder itself, or the data root
    assert Counter(c.source for c in en) == {"ESconv": 158, "MHP": 73, "ExTES": 70, "Psych": 25, "EPITOME": 5}
    assert Counter(c.source for c in zh) == {"PsyQA": 252, "smile": 72}
    assert en[0].id == 32025 and en[0].profile()["gender"] == "Female" and en[0].category_en == "family life"
    assert en[0].base_zh.startswith("年龄：未提及")  # the Chinese annotation of an English card
    assert all(c.base == c.base_zh for c in zh)
    assert zh[0].id == 10000 and zh[0].profile()["age"] == "青年"


def test_test_cards_are_the_first_three(data_root):
    for language in ("en", "zh"):
        assert load_cards(data_root, language, which="test") == load_cards(data_root, language)[:3]


def test_unknown_language_is_an_error(data_root):
    with pytest.raises(HarnessError, match="unknown ESC-Eval language 'fr'"):
        load_cards(data_root, "fr")


def test_transcripts(folder):
    dialogues = read_transcripts(folder / "reference" / "result" / "2024-06-24" / "llama3_zh.json")
    assert sorted(dialogues) == ["0", "1", "2"]
    for turns in dialogues.values():
        assert [t.role for t in turns] == ["supporter"] + ["seeker", "supporter"] * 5  # greeting + 5 rounds
        assert turns[0].details == {"greeting": True} and turns[0].text == "你好，我是您的私人助手，您有任何烦恼都可以向我诉说！"
        assert all(t.details == {} for t in turns[1:])
        assert not any(t.text.startswith(("：", "ESC-Role", "AI assistant")) for t in turns)
    assert dialogues["0"][1].text.startswith("我最近一直在为相亲的事情感到困扰")


def test_scores_use_paper_names(folder):
    scores = read_scores(folder / "reference" / "score" / "llama3_zh.json")
    assert scores["2"] == {"fluency": 2, "expression": 3, "empathy": 3, "information": 3, "humanoid": 1, "skill": 3, "overall": 2}
    means = mean_scores(read_scores(folder / "reference" / "score" / "llama3_en.json"))
    assert means["humanoid"] == pytest.approx(5 / 3) and means["overall"] == 2.0


def test_reference_runs(data_root):
    runs = {r.name: r for r in load_reference_runs(data_root)}
    assert sorted(runs) == ["Qwen_7B_en", "Qwen_7B_zh", "llama3_en", "llama3_zh"]
    assert runs["Qwen_7B_en"].model == "Qwen_7B" and runs["Qwen_7B_en"].language == "en"
    assert runs["llama3_en"].card_ids == {"0": 32025, "1": 32027, "2": 32032}
    assert runs["Qwen_7B_zh"].card_ids == {"0": 10000, "1": 10021, "2": 10022}
    assert runs["llama3_zh"].date == "2024-06-24"


def test_minus_one_is_missing_not_a_score(tmp_path):
    path = tmp_path / "m_en.json"
    row = {"fluency": 3, "diversity": -1, "empathic": 2, "suggestion": 4, "human": 0, "tech": 1, "overall": 2}
    path.write_text(json.dumps({"0": row, "1": dict(row, diversity=2)}), encoding="utf-8")
    scores = read_scores(path)
    assert scores["0"]["expression"] is None and scores["0"]["humanoid"] == 0
    assert mean_scores(scores)["expression"] == 2.0  # the -1 is left out, not averaged in


@pytest.mark.parametrize(
    "content, message",
    [
        ({"0": {"fluency": 3}}, "lacks diversity"),
        ({"0": {"fluency": 7, "diversity": 3, "empathic": 3, "suggestion": 3, "human": 1, "tech": 3, "overall": 2}}, "fluency = 7"),
    ],
)
def test_bad_score_file(tmp_path, content, message):
    path = tmp_path / "bad_en.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(HarnessError, match=message) as info:
        read_scores(path)
    assert str(path) in str(info.value)


def test_bad_transcript_line(tmp_path):
    path = tmp_path / "bad_en.json"
    path.write_text(json.dumps({"0": ["AI assistant：Hi", "Someone else: hello"]}), encoding="utf-8")
    with pytest.raises(HarnessError, match="dialogue '0' line 1 does not start with") as info:
        read_transcripts(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(HarnessError, match="missing ESC-Eval file"):
        load_cards(tmp_path, "en")
    (tmp_path / "card_high_en.json").write_text("[\n{oops", encoding="utf-8")
    with pytest.raises(HarnessError, match=r"card_high_en.json:2: not valid JSON"):
        load_cards(tmp_path, "en")


def test_the_released_label_typo_is_read_as_the_supporter(tmp_path):
    """ESC-Eval's evaluate.py writes "AI assitant：" (sic); such transcripts read as those with the right spelling."""
    path = tmp_path / "typo_en.json"
    path.write_text(json.dumps({"0": ["AI assitant：Hi, how are you?", "ESC-Role：Not great.", "AI assistant：Tell me more."]}), encoding="utf-8")
    turns = read_transcripts(path)["0"]
    assert [(t.role, t.text, t.details) for t in turns] == [("supporter", "Hi, how are you?", {"greeting": True}), ("seeker", "Not great.", {}),
                                                           ("supporter", "Tell me more.", {})]

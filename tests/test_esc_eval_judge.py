"""ESC-Eval judge: rubrics, requests, and the strict score parser against the original's."""
import pytest

from harness.contract import DialogueTurn
from harness.errors import HarnessError
from simulators.esc_eval_judge import (
    CODE_TO_PAPER,
    DIMENSIONS,
    PROMPT_VERSION,
    RUBRICS,
    judge_request,
    original_parse,
    parse_score,
    prompts_digest,
    render_transcript,
)

TURNS = [
    DialogueTurn(role="supporter", text="Hello, I'm here for you.", details={"greeting": True}),
    DialogueTurn(role="seeker", text="I failed my exam again."),
    DialogueTurn(role="supporter", text="That sounds really discouraging."),
]


@pytest.mark.parametrize(
    "answer, score",
    [
        ("Score: 3", 3),
        ("score: 0", 0),
        ("Score: 4/4", 4),
        ("3/4", 3),
        ("2 out of 4", 2),
        ("The score is 1.", 1),
        ("**Score:** 2", 2),
        ("评分：3", 3),
        ("评分：３", 3),  # full-width digit
        ("得分为 1", 1),
        ("评分：3（满分4分）", 3),
        ("3", 3),
        ("  4. ", 4),
        ("4分", 4),
        ("Score: 3.0", 3),
        ("Score: 3 (scale 0-4)", 3),
        ("score (0-4): 2", 2),
        ("Score: 3\n\nThe supporter gave 2 suggestions.", 3),
        ("<think>maybe a score of 2</think>Score: 3", 3),
        # unparseable -> None, never 0
        ("10", None),
        ("Score: 10", None),
        ("Score: 5", None),
        ("12", None),
        ("Score: 3.5", None),
        ("Score: -1", None),
        ("Score: 3-4", None),
        ("Score: 2\nScore: 3", None),
        ("Score: 2, or 3/4", None),
        ("I cannot rate this.", None),
        ("Score: N", None),
        ("The supporter was kind 2 times and offered 3 ideas.", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_score(answer, score):
    assert parse_score(answer) == score


@pytest.mark.parametrize(
    "answer, original, ours",
    [
        ("10", 0, None),  # the original takes the smallest digit 0-4 present: "0"
        ("Score: 3 (scale 0-4)", 0, 3),
        ("Score: 3.0", 0, 3),
        ("12", 1, None),
        ("Score: 2\nScore: 3", 2, None),
        ("Score: 3\n\nThe supporter gave 2 suggestions.", 2, 3),
        ("I cannot rate this.", -1, None),  # -1 lands in the score file and in a plain mean
        ("评分：３", -1, 3),
    ],
)
def test_parser_differs_from_the_original(answer, original, ours):
    assert original_parse(answer) == original
    assert parse_score(answer) == ours


def test_original_and_ours_agree_on_clean_answers():
    for answer in ("0", "1", "2", "3", "4", "Score: 3", "评分：2", "3/4"):
        assert original_parse(answer) == parse_score(answer)


def test_every_dimension_has_a_five_level_rubric_in_both_languages():
    assert list(DIMENSIONS) == ["fluency", "expression", "empathy", "information", "humanoid", "skill", "overall"]
    assert CODE_TO_PAPER == {"fluency": "fluency", "diversity": "expression", "empathic": "empathy",
                             "suggestion": "information", "human": "humanoid", "tech": "skill", "overall": "overall"}
    for language in ("en", "zh"):
        assert set(RUBRICS[language]) == set(DIMENSIONS)
        for rubric in RUBRICS[language].values():
            assert rubric.title and len(rubric.definition) > 20
            assert len(rubric.levels) == 5 and all(level.strip() for level in rubric.levels)


def test_rubrics_are_our_own_words():
    text = " ".join(r.definition + " ".join(r.levels) for lang in RUBRICS.values() for r in lang.values())
    for phrase in ("As a data annotator", "There are no apparent issues in two issues", "uggection", "rules detials"):
        assert phrase not in text


def test_request_is_greedy_and_asks_for_a_lone_score():
    request = judge_request("empathic", TURNS, "en")  # code names are accepted
    assert request.generation.temperature == 0.0 and request.generation.n == 1
    assert len(request.messages) == 1 and request.messages[0].role == "user"
    prompt = request.messages[0].content
    assert "Dimension: Empathy" in prompt and "\n4: Warm and personal" in prompt
    assert "Supporter: Hello, I'm here for you.\nSeeker: I failed my exam again.\nSupporter: That sounds" in prompt
    assert prompt.endswith("Score: N")
    assert judge_request("empathy", TURNS, "en") == request


def test_chinese_request():
    prompt = judge_request("overall", TURNS, "zh").messages[0].content
    assert "维度：总体评价" in prompt and prompt.endswith("评分：N")
    assert "支持者：Hello, I'm here for you.\n求助者：I failed my exam again." in prompt


def test_transcript_rendering():
    assert render_transcript(TURNS[:2], "english") == "Supporter: Hello, I'm here for you.\nSeeker: I failed my exam again."
    assert render_transcript(TURNS[1:2], "zh") == "求助者：I failed my exam again."
    with pytest.raises(HarnessError, match="role 'assistant'"):
        render_transcript([DialogueTurn(role="assistant", text="x")], "en")


def test_unknown_names_are_errors():
    with pytest.raises(HarnessError, match="unknown ESC-Eval dimension 'kindness'"):
        judge_request("kindness", TURNS, "en")
    with pytest.raises(HarnessError, match="unknown ESC-Eval language"):
        judge_request("fluency", TURNS, "de")
    with pytest.raises(HarnessError, match="empty dialogue"):
        judge_request("fluency", [], "en")


def test_prompts_are_pinned():
    # Changed a rubric or template on purpose? Bump PROMPT_VERSION, then update this digest.
    assert PROMPT_VERSION == "esc-eval-judge/1"
    assert prompts_digest() == "190109b5f02100561645342586452e77b88d26ab95b8a2fc9d3898439cf3e411"

"""COMPEER's controllable empathetic reasoning (`tasks/compeer_reasoning.py`): the vocabularies, the parser on
good and malformed answers (English and Chinese), the ``prompt=compeer`` mode of the text tasks, and the
``prompt=compeer`` option of the dialogue tasks (ESC-Eval, SAGE), where only the parsed response goes on."""
from __future__ import annotations

import hashlib
import json

import pytest

from harness.contract import DialogueTurn, RunHeader, Sample, SampleRecord, Turn
from harness.errors import HarnessError
from harness.runner import RoleConfig, RunConfig, load_task, run
from role_script import Script
from simulators.esc_eval import GREETING, ESCEvalTask
from simulators.esc_eval_judge import DIMENSIONS
from simulators.sage import SUPPORTER_SYSTEM, SageTask
from tasks import compeer_reasoning as cr
from tasks import prompting
from tasks.compeer_reasoning import parse_compeer_output, render_output
from tasks.esconv import ESConvTask
from tasks.mesc import MescTask

THINK = ("<think>\nStep 1 (History): Core issue: THINK-MARKER she lost her job and hides it. Stage: exploration\n"
         "Step 2 (Emotion): Sentiment: negative; Emotion: anxiety; Intensity: high\n"
         "Step 3 (Strategy): Strategy: reflection of feelings. Why: she needs to feel heard first.\n</think>\n")


def answer(response: str, strategy: str = "reflection of feelings") -> str:
    return render_output("THINK-MARKER she is worried.", "exploration", "negative", "anxiety", "high", strategy, "THINK-MARKER why.", response)


# --------------------------------------------------------------------------- vocabularies and prompts


def test_vocabularies():
    assert cr.STAGES == ("exploration", "comforting", "action")
    assert cr.SENTIMENTS == ("positive", "negative", "neutral") and cr.INTENSITIES == ("low", "medium", "high")
    assert len(cr.STRATEGIES) == 8 == len(set(cr.STRATEGIES)) and set(cr.HILL_STAGE) == set(cr.STRATEGIES)
    assert sorted(set(cr.HILL_STAGE.values())) == ["action", "exploration", "insight"]
    assert cr.PAPER_EXAMPLES == {"progressive questioning": "open question", "emotional mapping": "reflection of feelings"}
    for field, table in cr.WORDS.items():
        for canon in table:
            assert cr.normalise(field, canon) == (canon, [canon])  # every name reads as itself
    for example, strategy in cr.PAPER_EXAMPLES.items():
        assert cr.normalise("strategy", example)[0] == strategy
    doc = cr.__doc__
    for source in ("Liu et al. 2021", "Hill 2020", "NOT THE PAPER'S TEXT", "low", "步骤1", "对话历史分析"):
        assert source in doc


def test_prompts_name_the_steps_the_vocabularies_and_the_form():
    prompts = [cr.system_prompt(MescTask.roles), cr.system_prompt(ESConvTask.roles), cr.dialogue_system_prompt("en"), cr.dialogue_system_prompt("zh")]
    for prompt in prompts:
        for word in (*cr.STAGES, *cr.SENTIMENTS, *cr.INTENSITIES, *cr.STRATEGIES, "Step 1 (History)", "Step 2 (Emotion)", "Step 3 (Strategy)"):
            assert word in prompt
        assert prompt.endswith(cr.FORM) and "<think>" in prompt and "<response> ... </response>" in prompt
    assert "therapist" in prompts[0] and "client" in prompts[0] and "visual cues" in prompts[0]
    assert "visual" not in prompts[1] and "video" not in prompts[1]  # ESConv is text only
    assert "中文" in prompts[3] and cr.dialogue_system_prompt("fr") == prompts[2]


def test_prompt_texts_are_pinned():
    # a prompt change is deliberate: update the digest in the same change (and expect new cache keys in that mode)
    texts = [cr.system_prompt(MescTask.roles), cr.system_prompt(ESConvTask.roles), cr.dialogue_system_prompt("en"), cr.dialogue_system_prompt("zh")]
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    assert digest == PROMPTS_DIGEST, digest


PROMPTS_DIGEST = "174947b86f474eb21e8a2e993569dc945faca0247e718d13a838b68816150b2c"


# --------------------------------------------------------------------------- parsing


def test_parse_a_good_answer():
    out = parse_compeer_output(THINK + "<response> It sounds like you are carrying this alone. </response>")
    assert out.format_ok and out.response == "It sounds like you are carrying this alone."
    assert out.thinking.startswith("Step 1 (History): Core issue:") and out.thinking.endswith("feel heard first.")
    d = out.details
    assert d["steps_present"] == [True, True, True] and d["malformed"] == []
    assert (d["stage"], d["sentiment"], d["emotion"], d["intensity"], d["strategy"], d["hill_stage"]) == \
        ("exploration", "negative", "anxiety", "high", "reflection of feelings", "exploration")
    assert d["core_issue"] == "THINK-MARKER she lost her job and hides it" and d["why"] == "she needs to feel heard first"
    assert d["steps"][1] == "Sentiment: negative; Emotion: anxiety; Intensity: high" and d["labels"] == "en"
    json.dumps(d)  # the record stores it


@pytest.mark.parametrize("strategy", cr.STRATEGIES)
def test_render_output_round_trips(strategy):
    out = parse_compeer_output(answer("Go on.", strategy))
    assert out.format_ok and out.response == "Go on." and out.details["strategy"] == strategy


@pytest.mark.parametrize("text", [
    # markdown, other step separators, one line, other cases of labels and values
    "<think>**Step 1: History**\n**Core issue:** x\n**Stage:** Exploration\n**Step 2: Emotion**\n- Sentiment: NEGATIVE\n- Emotion: Fear\n"
    "- Intensity: Medium\n**Step 3: Strategy**\nStrategy: Open-ended question\nWhy: y</think><response>What happened?</response>",
    "<think>Step one - core issue: x. stage: exploration. Step two - sentiment: negative; emotion: fear; intensity: medium. "
    "Step three - strategy: progressive questioning. why: y</think><response>What happened?</response>",
    "<think>Step 1 (History): Core issue: x Stage: exploration Step 2 (Emotion): Sentiment: negative Emotion: fear Intensity: moderate "
    "Step 3 (Strategy): Strategy: Open question (progressive questioning). Why: as in step 2, she is afraid.</think><response>What happened?</response>",
])
def test_parse_tolerates_layout(text):
    out = parse_compeer_output(text)
    assert out.format_ok, out.details["malformed"]
    assert (out.details["stage"], out.details["sentiment"], out.details["emotion"], out.details["intensity"], out.details["strategy"]) == \
        ("exploration", "negative", "fear", "medium", "open question")


def test_tags_in_other_case():
    out = parse_compeer_output(THINK.replace("<think>", "<THINK>").replace("</think>", "</Think>") + "<RESPONSE> Go on. </Response>")
    assert out.format_ok and out.response == "Go on." and out.details["strategy"] == "reflection of feelings"


@pytest.mark.parametrize("text,response,reasons", [
    ("", "", ["no_think", "no_response_tags", "empty_response", "missing_step_1", "missing_step_2", "missing_step_3"]),
    ("<response> Only a reply. </response>", "Only a reply.", ["no_think", "missing_step_1", "missing_step_2", "missing_step_3"]),
    ("Just a plain reply.", "Just a plain reply.", ["no_think", "no_response_tags", "missing_step_1", "missing_step_2", "missing_step_3"]),
    ("Sure! " + THINK + "<response> Go on. </response>", "Go on.", ["text_outside_tags"]),
    (THINK + "<response> Go on. </response> Hope that helps.", "Go on.", ["text_outside_tags"]),
    (THINK + "<response> A </response><response> B </response>", "A", ["two_responses"]),
    (THINK + "<response>  </response>", "", ["empty_response"]),
    (THINK, "", ["no_response_tags", "empty_response"]),
    (THINK + "Response: Go on.", "Go on.", ["no_response_tags", "text_outside_tags"]),  # the label is dropped
    ("<think>Step 1 (History): Core issue: x. Stage: exploration", "", ["unclosed_think", "no_response_tags", "empty_response"]),
    (THINK + "<response> Go on.", "Go on.", ["unclosed_response"]),
    ("<response> Go on. </response>" + THINK, "Go on.", ["response_before_think"]),
])
def test_malformed_tags_are_scored_and_flagged(text, response, reasons):
    out = parse_compeer_output(text)
    assert out.format_ok is False and out.response == response
    assert [r for r in out.details["malformed"] if not r.startswith(("missing_", "empty_step"))] == \
        [r for r in reasons if not r.startswith(("missing_", "empty_step"))]
    assert set(reasons) <= set(out.details["malformed"])
    if "<response>" in text:  # the response is recovered exactly as for the FIRES-format modes
        assert out.response == prompting.parse_thinking_output(text).response


def test_missing_steps_and_fields():
    out = parse_compeer_output("<think>Step 1 (History): Core issue: x. Stage: action\nStep 3 (Strategy): Strategy: direct guidance</think>"
                               "<response>Try writing to her.</response>")
    d = out.details
    assert not out.format_ok and d["steps_present"] == [True, False, True] and d["steps"][1] is None
    assert d["malformed"] == ["missing_step_2"]  # the missing step says it; its fields are not listed again
    assert (d["stage"], d["sentiment"], d["strategy"], d["hill_stage"]) == ("action", None, "direct guidance", "action")
    out = parse_compeer_output("<think>Step 1 (History): Stage: comforting\nStep 2 (Emotion): Sentiment: neutral\nStep 3 (Strategy):</think>"
                               "<response>I'm here.</response>")
    assert out.details["malformed"] == ["empty_step_3", "missing_core_issue", "missing_emotion", "missing_intensity"]
    assert out.details["steps_present"] == [True, True, False]


def test_wrong_labels_are_none_with_a_flag_and_kept_raw():
    text = THINK.replace("Stage: exploration", "Stage: denial").replace("Sentiment: negative", "Sentiment: bittersweet") \
        .replace("Intensity: high", "Intensity: 7/10").replace("Strategy: reflection of feelings", "Strategy: hugging")
    out = parse_compeer_output(text + "<response> Go on. </response>")
    d = out.details
    assert not out.format_ok and out.response == "Go on."
    assert d["malformed"] == ["unknown_stage", "unknown_sentiment", "unknown_intensity", "unknown_strategy"]
    assert (d["stage"], d["sentiment"], d["intensity"], d["strategy"], d["hill_stage"]) == (None, None, None, None, None)
    assert d["raw_fields"]["stage"] == "denial" and d["raw_fields"]["strategy"] == "hugging" and d["emotion"] == "anxiety"
    # Hill's approval-reassurance is not one of the eight in this reading
    assert parse_compeer_output(answer("x", "approval and reassurance")).details["malformed"] == ["unknown_strategy"]


def test_several_strategies_keep_the_first_and_a_named_one_wins():
    several = parse_compeer_output(answer("x", "to validate her: emotional mapping, then direct guidance"))
    assert several.details["strategy"] == "reflection of feelings" and several.details["malformed"] == ["several_strategy"]
    named = parse_compeer_output(answer("x", "restatement, then maybe a question"))  # starts with a name: that one
    assert named.details["strategy"] == "restatement" and named.format_ok


def test_steps_repeated_or_out_of_order_and_labels_inside_values():
    out = parse_compeer_output("<think>Step 2 (Emotion): Sentiment: neutral; Emotion: calm; Intensity: low\nStep 1 (History): Core issue: x. "
                               "Stage: action\nStep 3 (Strategy): Strategy: information\nStep 3 (Strategy): Strategy: challenge</think><response>y</response>")
    assert out.details["malformed"] == ["repeated_step_3", "steps_out_of_order"] and out.details["strategy"] == "information"
    out = parse_compeer_output("<think>Step 1 (History): Core issue: her problem: she can't sleep. Stage: exploration\n"
                               "Step 2 (Emotion): Emotion: Sentiment: negative; Emotion: fear; Intensity: low\n"
                               "Step 3 (Strategy): Strategy: restatement. Why: Step 2 shows fear.</think><response>x</response>")
    assert out.format_ok and out.details["core_issue"] == "her problem: she can't sleep"  # a second core-issue label stays in the value
    assert out.details["emotion"] == "fear" and out.details["why"] == "Step 2 shows fear"  # "Why: Step 2 ..." is no header


def test_unlabelled_stage_and_core_issue_in_natural_language():
    out = parse_compeer_output("<think>Step 1: She has just lost her job; we are still in the exploration stage.\n"
                               "Step 2: Sentiment: negative; Emotion: shame; Intensity: low\nStep 3: Strategy: restatement. Why: y</think>"
                               "<response>You lost your job.</response>")
    assert out.format_ok and out.details["stage"] == "exploration" and out.details["unlabelled"] == ["stage", "core_issue"]
    assert out.details["core_issue"].startswith("She has just lost her job")


def test_chinese_labels_are_read_and_flagged():
    text = ("<think>步骤1（对话历史分析）：核心问题：失业后不敢告诉家人。阶段：探索\n步骤2（情绪状态分析）：情感倾向：消极；情绪：焦虑、羞愧；强度：高\n"
            "步骤3（支持策略分析）：策略：情感反映。理由：她需要先被理解。</think><response>听起来你一个人扛着这件事，很焦虑。</response>")
    out = parse_compeer_output(text)
    d = out.details
    assert out.format_ok and out.response == "听起来你一个人扛着这件事，很焦虑。" and d["labels"] == "zh"
    assert (d["stage"], d["sentiment"], d["emotion"], d["intensity"], d["strategy"]) == ("exploration", "negative", "焦虑", "high", "reflection of feelings")
    assert d["raw_fields"]["strategy"] == "情感反映" and d["why"] == "她需要先被理解"
    # 第N步 headers, English labels with Chinese reasoning (what the zh prompt asks for), full-width colons
    mixed = parse_compeer_output("<think>第一步：Core issue：失业。Stage：comforting\n第二步：Sentiment：negative；Emotion：悲伤；Intensity：medium\n"
                                 "第三步：Strategy：self-disclosure。Why：拉近距离。</think><response>我也失业过。</response>")
    assert mixed.format_ok and mixed.details["labels"] == "mixed" and mixed.details["strategy"] == "self-disclosure"
    assert mixed.details["emotion"] == "悲伤" and mixed.details["stage"] == "comforting"
    # named Chinese steps without numbers; an unknown Chinese category is flagged, never a crash
    named = parse_compeer_output("<think>对话历史分析：核心问题：考试。阶段：未知\n情绪状态：情感倾向：消极；情绪：紧张；强度：中\n支持策略分析：策略：拥抱</think>"
                                 "<response>别担心。</response>")
    assert named.details["steps_present"] == [True, True, True] and named.details["labels"] == "zh"
    assert named.details["malformed"] == ["unknown_stage", "unknown_strategy"] and named.details["intensity"] == "medium"


def test_steps_without_tags_never_become_the_response():
    out = parse_compeer_output("Step 1 (History): Core issue: x. Stage: action\nStep 2 (Emotion): Sentiment: negative; Emotion: fear; "
                               "Intensity: low\nStep 3 (Strategy): Strategy: information. Why: y\nResponse: A helpline can help.")
    assert out.response == "A helpline can help." and "Step 1" in out.thinking and out.details["strategy"] == "information"
    assert out.details["malformed"] == ["no_think", "no_response_tags"] and not out.format_ok
    bare = parse_compeer_output("步骤1：核心问题：x。阶段：行动\n步骤2：情感倾向：消极\n步骤3：策略：建议")
    assert bare.response == "" and "empty_response" in bare.details["malformed"] and bare.details["strategy"] == "direct guidance"
    leaked = parse_compeer_output("<response>Step 1 (History): Stage: action. I hear you.</response>")
    assert "steps_in_response" in leaked.details["malformed"]


@pytest.mark.parametrize("text", ["<think>", "</think></think><response>", "<response></response></think><think>", "<<think>>",
                                  "\x00\u2028<response>é", "Step 1", "步骤", "Step 9: x", "Stage: : : Strategy:::", "<think>" * 50 + "Step 2 (" * 50])
def test_never_raises(text):
    out = parse_compeer_output(text)
    assert isinstance(out.response, str) and isinstance(out.details["malformed"], list) and out.format_ok is False
    assert parse_compeer_output(None).response == ""  # type: ignore[arg-type]


# --------------------------------------------------------------------------- prompt=compeer in the text tasks


@pytest.fixture(scope="module")
def mesc_folder(data_root):
    from harness import datafiles

    found, _ = datafiles.resolve(MescTask.dataset, "mesc", data_root, allow_modified=False)
    return found


def test_mesc_request_in_compeer_mode(mesc_folder):
    task = MescTask(prompt="compeer", frames_dir="off")
    sample = next(s for s in task.load("test", mesc_folder) if s.id == "mesc/test/d0010/t03")
    request = task.build_request(sample)
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[0].content == cr.system_prompt(MescTask.roles)
    assert request.messages[1].content.split("\n") == [f"{t.speaker}: {t.text}" for t in sample.history] + ["Therapist:"]
    assert sample.reference not in request.messages[1].content
    assert request.generation.max_tokens == prompting.COMPEER_MAX_TOKENS == cr.MAX_TOKENS >= prompting.THINKING_MAX_TOKENS
    # the other modes are untouched (their golden files pin them): fires keeps its own prompt and budget
    fires = MescTask(prompt="fires", frames_dir="off").build_request(sample)
    assert fires.messages[1] == request.messages[1] and fires.generation.max_tokens == prompting.THINKING_MAX_TOKENS


def test_compeer_is_a_mode_of_every_text_task():
    history = (Turn(speaker="Seeker", text="I failed my exam."),)
    for name in ("mesc", "esconv", "emotyda-esc"):
        task = load_task(name, {"prompt": "compeer"})
        assert task.options == prompting.PromptOptions("compeer", 0) and task.options.thinking
        parsed = task.parse_response(answer("That must hurt."))
        assert parsed.format_ok and parsed.response == "That must hurt." and parsed.details["strategy"] == "reflection of feelings"
    request = ESConvTask(prompt="compeer").build_request(Sample(id="esconv/test/1/t1", history=history, reference="r"))
    assert request.messages[0].content == cr.system_prompt(ESConvTask.roles)
    assert request.messages[1].content == "Seeker: I failed my exam.\nSupporter:"
    with pytest.raises(HarnessError, match="compeer"):  # the error lists it among the modes
        MescTask(prompt="COMPEER")


def test_compeer_shots_show_replies_only(mesc_folder):
    task = MescTask(prompt="compeer", shots=2, frames_dir="off")
    task.load("test", mesc_folder)
    sample = task.load("test", mesc_folder)[10]
    user = task.build_request(sample).messages[1].content
    assert "only the reply is shown, not the thinking" in user and "<think>" not in user
    assert user.endswith("Now the conversation to answer:\n" + prompting.transcript(sample.history, MescTask.roles))


def test_a_mesc_run_records_the_mode_and_the_parse(tmp_path, data_root):
    outputs = [answer("What happened then?", "open question"), "no tags at all"]
    config = RunConfig(task="mesc", model="scripted", task_args={"prompt": "compeer", "frames_dir": "off"}, model_args={"outputs": outputs},
                       limit=2, metrics=["bleu-2"], output_dir=tmp_path / "runs", use_cache=False, data_dir=data_root)
    result = run(config, progress=False)
    header = json.loads((result.run_dir / "run.json").read_text())
    assert header["task_args"] == {"prompt": "compeer", "frames_dir": "off"}
    records = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert [r["response"] for r in records] == ["What happened then?", "no tags at all"]
    assert [r["format_ok"] for r in records] == [True, False]
    assert records[0]["parse_details"]["strategy"] == "open question" and "THINK-MARKER" in records[0]["thinking"]
    assert records[0]["output"] == outputs[0]  # the raw output is kept
    assert result.summary.format_errors == 1


# --------------------------------------------------------------------------- prompt=compeer in the dialogue tasks


CARD = "Age: 34\nOccupation: CARD-MARKER welder\nProblem: Lost his job."
ESC_SAMPLE = Sample(id="esc-eval/en/high/1", history=(), reference="", labels={"card": CARD, "card_id": 1, "category": "x", "source": "ESconv",
                                                                               "language": "en"})


def everything(request) -> str:
    return "\n".join(m.content for m in request.messages)


def test_esc_eval_compeer_passes_only_the_response_on():
    from harness import grading, registry
    from harness.grading import graders_of

    task = ESCEvalTask(rounds=2, prompt="compeer")
    ask = Script(seeker=["I lost my job.", "My wife doesn't know."], model=[answer(" That sounds heavy. "), "plain words, no tags"],
                 judge=["Score: 2"] * 7)
    result = task.play(ESC_SAMPLE, ask)
    assert [t.text for t in result.turns] == [GREETING["en"], "I lost my job.", "That sounds heavy.", "My wife doesn't know.", "plain words, no tags"]
    # the seeker's next request holds the response, never the thinking
    second_seeker = ask.requests("seeker")[1]
    assert second_seeker.messages[-1].content == "That sounds heavy."
    assert "THINK-MARKER" not in everything(second_seeker) and "<think>" not in everything(second_seeker)
    # the model under test: COMPEER's system prompt, its greeting and its earlier reply as responses only
    first_model, second_model = ask.requests("model")
    assert first_model.messages[0].role == "system" and first_model.messages[0].content == cr.dialogue_system_prompt("en")
    assert [(m.role, m.content) for m in second_model.messages[1:]] == [
        ("assistant", GREETING["en"]), ("user", "I lost my job."), ("assistant", "That sounds heavy."), ("user", "My wife doesn't know.")]
    assert first_model.generation.max_tokens == cr.MAX_TOKENS and "CARD-MARKER" not in everything(second_model)
    # the record keeps the raw output and the parse on the turn
    kept = result.turns[2].details["compeer"]
    assert kept["output"] == answer(" That sounds heavy. ") and kept["format_ok"] and kept["parse"]["strategy"] == "reflection of feelings"
    assert "THINK-MARKER" in kept["thinking"] and result.turns[4].details["compeer"]["format_ok"] is False
    assert result.outcome == {"language": "en", "rounds": 2, "compeer_format_errors": 1}
    # the judge scores the responses only
    record = SampleRecord(index=0, id=ESC_SAMPLE.id, history=[], reference="", labels=ESC_SAMPLE.labels, output="", response="",
                          dialogue=result.turns, outcome=result.outcome)
    metrics = [f"esc-eval-{d}" for d in DIMENSIONS]
    grading.grade_records(graders_of(registry.metrics.get(m) for m in metrics), [record], {"judge": lambda rs: [ask("judge", r) for r in rs]})
    judged = ask.requests("judge")
    assert len(judged) == 7 and all("Supporter: That sounds heavy." in everything(r) and "THINK-MARKER" not in everything(r) for r in judged)


def test_esc_eval_chinese_cards_get_the_chinese_compeer_prompt():
    task = ESCEvalTask(language="zh", rounds=1, prompt="compeer")
    ask = Script(seeker=["我最近压力很大。"], model=["<think>步骤1：核心问题：压力。阶段：探索\n步骤2：情感倾向：消极；情绪：焦虑；强度：中\n"
                                                "步骤3：策略：提问。理由：先了解。</think><response>能多说说吗？</response>"])
    result = task.play(Sample(id="esc-eval/zh/high/1", history=(), reference="", labels={"card": "年龄：20"}), ask)
    assert ask.requests("model")[0].messages[0].content == cr.dialogue_system_prompt("zh")
    assert result.turns[-1].text == "能多说说吗？" and result.turns[-1].details["compeer"]["parse"]["strategy"] == "open question"
    assert result.outcome["compeer_format_errors"] == 0


def test_esc_eval_default_and_bad_prompt():
    assert ESCEvalTask().prompt == "plain"
    turns = [DialogueTurn(role="supporter", text="hi"), DialogueTurn(role="seeker", text="x")]
    assert all(m.role != "system" for m in ESCEvalTask.supporter_request(turns).messages)  # the default request is unchanged
    for bad in ("fires", "COMPEER"):
        with pytest.raises(HarnessError, match="prompt must be one of plain, compeer"):
            ESCEvalTask(prompt=bad)
        with pytest.raises(HarnessError, match="prompt must be one of plain, compeer"):
            SageTask(prompt=bad)


def test_esc_eval_run_with_scripted_roles_records_the_mode(tmp_path, data_root):
    # the seeker echoes the last thing it was told: its second message is exactly what it saw of the first reply
    model = [answer("Tell me more about the nights."), answer("Nights can be the hardest.")]
    config = RunConfig(task="esc-eval", model="scripted", model_args={"outputs": model}, limit=1, concurrency=1, resamples=10,
                       task_args={"rounds": 2, "prompt": "compeer"}, roles={"seeker": RoleConfig("scripted", {"echo": True}),
                                                                           "judge": RoleConfig("scripted", {"default": "Score: 3"})},
                       output_dir=tmp_path / "runs", cache_path=tmp_path / "cache.sqlite", data_dir=data_root)
    result = run(config, progress=False)
    header = RunHeader.model_validate_json((result.run_dir / "run.json").read_text())
    assert header.task_args == {"rounds": 2, "prompt": "compeer"}
    (record,) = [SampleRecord.model_validate_json(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    texts = [t.text for t in record.dialogue]
    assert texts[2] == "Tell me more about the nights." and texts[3] == "Tell me more about the nights."  # the echo: response only
    assert record.output == record.response == "Nights can be the hardest."
    assert all("THINK-MARKER" not in t for t in texts) and "THINK-MARKER" in record.dialogue[2].details["compeer"]["output"]
    assert record.outcome["judge"] == dict.fromkeys(DIMENSIONS, 3) and record.outcome["compeer_format_errors"] == 0


SAGE_EN = Sample(id="sage/en-1", history=(), reference="", labels={
    "player": "Sam, a nurse.", "scene": "SCENE-MARKER", "main_cha": "Reserved", "cha_group": [], "task": "HIDDEN-NEED-MARKER",
    "first_talk": "I don't really know why I'm writing this.", "scenario_id": "en-1"})


def test_sage_compeer_passes_only_the_response_on():
    task = SageTask(max_turns=3, prompt="compeer")
    ask = Script(model=[answer("It's okay not to know."), "<think>Step 1 (History): THINK-MARKER</think>"],
                 seeker=["Thought: kind\nFeeling: calmer\nChange: +5", "Maybe.", "Thought: nothing said\nFeeling: ignored\nChange: -3", "Hm."])
    result = task.play(SAGE_EN, ask)
    assert [t.text for t in result.turns] == ["I don't really know why I'm writing this.", "It's okay not to know.", "Maybe.", "", "Hm."]
    # the agent reasons about and answers the response only
    reason_1, reply_1, reason_2, _ = ask.requests("seeker")
    assert reason_1.messages[1].content.endswith("## The partner's latest reply\nIt's okay not to know.")
    assert all("THINK-MARKER" not in everything(r) and "<think>" not in everything(r) for r in ask.requests("seeker"))
    # the model under test: COMPEER's prompt instead of SUPPORTER_SYSTEM, its earlier reply as the response only
    first, second = ask.requests("model")
    assert first.messages[0].content == cr.dialogue_system_prompt("en") != SUPPORTER_SYSTEM["en"]
    assert [m.content for m in second.messages[1:]] == ["I don't really know why I'm writing this.", "It's okay not to know.", "Maybe."]
    assert second.generation.max_tokens == cr.MAX_TOKENS
    # the reply's details: the agent's reaction beside the raw output and its parse
    details = result.turns[1].details
    assert details["change"] == 5 and details["emotion"] == 45 and details["compeer"]["format_ok"]
    assert details["compeer"]["output"] == answer("It's okay not to know.")
    assert result.turns[3].details["compeer"]["parse"]["malformed"][:2] == ["no_response_tags", "empty_response"]
    assert result.outcome["compeer_format_errors"] == 1 and result.outcome["trajectory"] == [40, 45, 42]


def test_sage_default_request_is_unchanged():
    task = SageTask()
    assert task.prompt == "plain"
    request = task.supporter_request([DialogueTurn(role="seeker", text="hi")], "en")
    assert request.messages[0].content == SUPPORTER_SYSTEM["en"] and request.generation == type(request.generation)()

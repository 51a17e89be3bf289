"""Prompting modes (tasks/prompting.py) as the MESC task uses them: golden prompts, demonstrations, parsing.

The golden files in tests/golden/ hold the exact request for one MESC test sample in each mode, so any
change to a prompt fails here. To change a prompt on purpose, regenerate them and review the diff:

    UPDATE_GOLDEN=1 ESC_HARNESS_DATA=../shared/data python -m pytest tests/test_prompting.py -k golden
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import datafiles
from harness.contract import Message, Sample, Turn
from harness.errors import HarnessError
from harness.runner import load_task
from tasks import prompting
from tasks.mesc import CLIENT, SYSTEM_PROMPT, THERAPIST, MescTask
from tasks.prompting import (
    ASPECTS,
    FIRES_SYSTEM_PROMPT,
    PromptOptions,
    analyse_thinking,
    draw_shots,
)

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_SAMPLE = "mesc/test/d0010/t03"  # a test sample with a three-turn history
GOLDEN_SEED = 0
GOLDEN_CASES = {
    "plain": {"prompt": "plain"},
    "fires": {"prompt": "fires"},
    "fixed-cot": {"prompt": "fixed-cot"},
    "flexible-cot": {"prompt": "flexible-cot"},
    "flexible-cot-2shot": {"prompt": "flexible-cot", "shots": 2},
}


@pytest.fixture(scope="module")
def folder(data_root) -> Path:
    found, _ = datafiles.resolve(MescTask.dataset, "mesc", data_root, allow_modified=False)
    return found


@pytest.fixture(scope="module")
def splits(folder) -> dict[str, list[Sample]]:
    task = MescTask(frames_dir="off")
    return {split: task.load(split, folder) for split in task.splits}


def make_task(folder: Path, seed: int = 0, **args) -> MescTask:
    task = MescTask(frames_dir="off", **args)
    task.seed = seed
    task.load("test", folder)  # the runner loads before it builds requests
    return task


# --------------------------------------------------------------------------- golden prompts


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_prompt(case, folder, splits):
    args = GOLDEN_CASES[case]
    sample = next(s for s in splits["test"] if s.id == GOLDEN_SAMPLE)
    request = make_task(folder, GOLDEN_SEED, **args).build_request(sample)
    got = {"sample": GOLDEN_SAMPLE, "seed": GOLDEN_SEED, "task_args": args, "request": request.model_dump(mode="json")}
    path = GOLDEN / f"mesc-{case}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert path.is_file(), f"{path} missing; make it with UPDATE_GOLDEN=1 (see this file's docstring)"
    assert got == json.loads(path.read_text(encoding="utf-8")), f"prompt drift in mode {case}; if intended, regenerate with UPDATE_GOLDEN=1"


def test_plain_is_the_original_prompt(folder, splits):
    # the default mode must stay byte for byte what runs made before the modes existed
    assert MescTask().options == PromptOptions("plain", 0)
    for sample in splits["test"][:20]:
        request = MescTask(frames_dir="off").build_request(sample)
        legacy = [Message(role="system", content=SYSTEM_PROMPT)]
        legacy += [Message(role={CLIENT: "user", THERAPIST: "assistant"}[t.speaker], content=t.text) for t in sample.history]
        assert request.messages == tuple(legacy)
        assert request.generation.max_tokens == 256


def test_fires_mode_uses_the_paper_system_prompt_and_a_transcript(folder, splits):
    sample = splits["test"][3]
    request = make_task(folder, prompt="fires").build_request(sample)
    assert FIRES_SYSTEM_PROMPT.startswith("You are an expert in Emotional Support Conversation. Based on the conversation history,")
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[0].content == FIRES_SYSTEM_PROMPT
    lines = request.messages[1].content.split("\n")
    assert lines == [f"{t.speaker}: {t.text}" for t in sample.history] + ["Therapist:"]
    assert sample.reference not in request.messages[1].content


@pytest.mark.parametrize("mode", ["fixed-cot", "flexible-cot"])
def test_cot_prompts_name_the_four_aspects_and_the_format(mode, folder, splits):
    system = make_task(folder, prompt=mode).build_request(splits["test"][0]).messages[0].content
    for label in ("Visual Scene:", "Emotion:", "Situation:", "Response Strategy:"):
        assert label in system
    assert "<think>" in system and "</think><response>" in system and "</response>" in system
    assert ("all four aspects" in system) == (mode == "fixed-cot")


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("args,fragment", [
    ({"prompt": "cot"}, "plain, fires, fixed-cot, flexible-cot"),
    ({"prompt": "FIRES"}, "unknown prompt 'FIRES'"),
    ({"shots": -1}, "shots must be a whole number"),
    ({"shots": "two"}, "shots must be a whole number"),
    ({"shots": 1.5}, "shots must be a whole number"),
    ({"shots": True}, "shots must be a whole number"),
])
def test_bad_options_are_harness_errors(args, fragment):
    with pytest.raises(HarnessError, match=fragment):
        MescTask(**args)
    with pytest.raises(HarnessError, match=fragment):  # as the runner builds the task
        load_task("mesc", args)


def test_unknown_option_and_string_shots():
    with pytest.raises(HarnessError, match="bad --task-args"):
        load_task("mesc", {"shot": 2})
    assert MescTask(shots="3").options == PromptOptions("plain", 3)


# --------------------------------------------------------------------------- demonstrations


def test_shots_come_from_train_never_the_evaluated_dialogue(folder, splits):
    for split in ("test", "val"):
        task = make_task(folder, prompt="fixed-cot", shots=3)
        for sample in splits[split][::15]:
            demos = task._demonstrations(sample)
            assert len(demos) == 3 and len({d.id for d in demos}) == 3
            assert all(d.id.startswith("mesc/train/") for d in demos)
    task = make_task(folder, shots=4)
    for sample in splits["train"][::40]:  # evaluating train itself: never the same dialogue
        own = sample.labels["dialogue_id"]
        assert all(d.labels["dialogue_id"] != own for d in task._demonstrations(sample))


def test_shots_depend_on_seed_and_sample_only(folder, splits):
    samples = splits["test"][:30]
    first = [[d.id for d in make_task(folder, 7, shots=2)._demonstrations(s)] for s in samples]
    again = [[d.id for d in make_task(folder, 7, shots=2, prompt="fires")._demonstrations(s)] for s in reversed(samples)]
    assert first == list(reversed(again))  # same seed: same shots, whatever the order or mode
    other = [[d.id for d in make_task(folder, 8, shots=2)._demonstrations(s)] for s in samples]
    assert sum(a != b for a, b in zip(first, other)) >= 25  # another seed: (almost always) others
    assert len({tuple(x) for x in first}) >= 25  # and samples do not all share the same demonstrations


def test_shot_pool_is_loaded_lazily_once(folder, splits, monkeypatch):
    calls = []
    original = MescTask._samples

    def counting(self, split, data_dir):
        calls.append(split)
        return original(self, split, data_dir)

    monkeypatch.setattr(MescTask, "_samples", counting)
    task = make_task(folder, shots=0)
    for s in splits["test"][:5]:
        task.build_request(s)
    assert calls == ["test"] and task._shot_pool is None  # no shots: train is never read
    calls.clear()
    task = make_task(folder, shots=2)
    for s in splits["test"][:10]:
        task.build_request(s)
    assert calls == ["test", "train"]


def test_demonstrations_in_the_request(folder, splits):
    sample = splits["test"][10]
    plain = make_task(folder, shots=2).build_request(sample)
    demos = make_task(folder, shots=2)._demonstrations(sample)
    # plain: the examples go into the system message; the chat turns are still the conversation answered
    assert plain.messages[0].content.startswith(SYSTEM_PROMPT + "\n\n")
    assert all(d.reference in plain.messages[0].content for d in demos)
    assert [m.content for m in plain.messages[1:]] == [t.text for t in sample.history]
    # thinking modes: examples first in the user message, reply only, inside <response> tags
    cot = make_task(folder, shots=2, prompt="fixed-cot").build_request(sample)
    user = cot.messages[1].content
    for d in demos:
        assert f"Therapist: <response> {d.reference} </response>" in user
    assert "<think>" not in user
    assert user.endswith("Now the conversation to answer:\n" + prompting.transcript(sample.history, MescTask.roles))


def test_text_only_tasks_say_there_is_no_video():
    roles = prompting.Roles("Seeker", "Supporter", "an online chat", video=False)
    for flexible in (False, True):
        system = prompting.cot_system_prompt(roles, flexible)
        assert "no video" in system and "frames from its video" not in system
        assert "You are the supporter in an online chat." in system and "the seeker's behaviour" in system


def test_draw_shots_small_pool():
    def sample(i: str, d: str) -> Sample:
        return Sample(id=f"x/train/{d}/{i}", history=(Turn(speaker="A", text="hi"),), reference="ok")

    pool = [sample("t1", "d1"), sample("t2", "d1"), sample("t1", "d2")]
    assert [d.id for d in draw_shots(pool, pool[0], 1, 0)] == ["x/train/d2/t1"]
    with pytest.raises(HarnessError, match="only 1 demonstrations"):
        draw_shots(pool, pool[0], 2, 0)
    assert draw_shots(pool, pool[0], 0, 0) == []


def test_images_go_on_the_last_user_message():
    roles = prompting.Roles("Client", "Therapist", "a session")
    history = (Turn(speaker="Client", text="a"), Turn(speaker="Therapist", text="b"), Turn(speaker="Client", text="c"))
    for mode in prompting.PROMPT_MODES:
        request = prompting.build_request(PromptOptions(mode), roles, "sys", history, images=("/x/1.png", "/x/2.png"))
        with_images = [i for i, m in enumerate(request.messages) if m.images]
        assert with_images == [len(request.messages) - 1], mode
        assert request.messages[-1].role == "user" and request.messages[-1].images == ("/x/1.png", "/x/2.png")


# --------------------------------------------------------------------------- parsing


def parse(text: str, mode: str = "fires"):
    return MescTask(prompt=mode, frames_dir="off").parse_response(text)


def test_parse_well_formed():
    out = parse("<think> Emotion: sad. Response Strategy: comfort her. </think><response> That sounds hard. </response>")
    assert (out.format_ok, out.response, out.thinking) == (True, "That sounds hard.", "Emotion: sad. Response Strategy: comfort her.")
    spaced = parse("\n <think>\nSituation: lost her job\n</think>\n\n<response>\nWhat happened?\n</response>\n")
    assert spaced.format_ok and spaced.response == "What happened?" and spaced.thinking == "Situation: lost her job"


@pytest.mark.parametrize("text,response,thinking", [
    ("<response> Hi there. </response>", "Hi there.", None),  # missing think
    ("<think> Emotion: sad </think>", "", "Emotion: sad"),  # missing response
    ("<think> Emotion: sad </think> I see.", "I see.", "Emotion: sad"),  # response without tags
    ("<think> Emotion: sad. Response Strategy: ask", "", "Emotion: sad. Response Strategy: ask"),  # unclosed think
    ("<think> Emotion: sad <response> Go on. </response>", "Go on.", "Emotion: sad"),  # think never closed
    ("<think> x </think><response> Go on.", "Go on.", "x"),  # unclosed response
    ("Sure! <think> x </think><response> Go on. </response>", "Go on.", "x"),  # text before
    ("<think> x </think><response> Go on. </response> Hope that helps.", "Go on.", "x"),  # text after
    ("<think> x </think><response>  </response>", "", "x"),  # empty response
    ("<think> x </think><response> A </response><think> y </think><response> B </response>", "A", "x"),  # two blocks
    ("Just a plain reply.", "Just a plain reply.", None),  # format ignored
    ("", "", None),
])
def test_parse_malformed_is_scored_with_format_flag(text, response, thinking):
    out = parse(text)
    assert out.format_ok is False
    assert out.response == response
    assert out.thinking == thinking
    assert set(out.details["aspects"]) == set(ASPECTS)


@pytest.mark.parametrize("text", ["<think>", "</think></think><response>", "<response></response></think><think>", "<<think>>", "\x00\u2028<response>é"])
def test_parse_never_raises(text):
    for mode in prompting.PROMPT_MODES:
        assert isinstance(parse(text, mode).response, str)


def test_plain_parse_is_unchanged():
    out = parse("  <think> x </think><response> y </response>\n", "plain")
    assert (out.response, out.format_ok, out.thinking, out.details) == ("<think> x </think><response> y </response>", True, None, {})


def test_aspects_all_covered():
    info = analyse_thinking("Visual Scene: she is crying. Emotion: sadness, frustration. Situation: cannot talk to her mother. "
                            "Response Strategy: validate her feelings.")
    assert info["aspects"] == {a: True for a in ASPECTS}
    assert info["declined"] == [] and info["unknown"] == []
    assert not info["emotion_neutral"] and not info["situation_unknown"]


def test_aspects_omitted_and_declined():
    # the FIRES case-study style: unhelpful aspects simply left out
    info = analyse_thinking("Situation: he dislikes charity. Response Strategy: explore his resistance.")
    assert info["aspects"] == {"visual_scene": False, "emotion": False, "situation": True, "response_strategy": True}
    assert info["declined"] == []
    # the appendix style: labelled but declined
    info = analyse_thinking("1. Visual Scene: None\n2. Emotion: Not helpful.\n3. Situation: N/A\n4. Response Goal: encourage her.")
    assert info["aspects"] == {"visual_scene": False, "emotion": False, "situation": False, "response_strategy": True}
    assert info["declined"] == ["visual_scene", "emotion", "situation"]


def test_aspects_neutral_and_unknown():
    info = analyse_thinking("Emotion: neutral. Situation: Unknown. Response Strategy: ask an open question.")
    assert info["emotion_neutral"] and info["situation_unknown"]
    assert info["aspects"]["emotion"] and info["aspects"]["situation"]  # present, with the figure-3 flags
    assert info["unknown"] == ["situation"]
    info = analyse_thinking("Emotion: Neutral, calm. Situation: **unknown** (too early).")
    assert info["emotion_neutral"] and info["situation_unknown"]
    info = analyse_thinking("Emotion: not neutral at all, angry. Situation: her son left.")
    assert not info["emotion_neutral"] and not info["situation_unknown"]


@pytest.mark.parametrize("thought", [
    "**Visual Scene:** calm room\n**Emotion:** anxious\n**Situation:** exam\n**Response Strategy:** reassure",
    "- **Visual Scene**: calm room\n- **Emotion**: anxious\n- **Situation**: exam\n- **Response Strategy**: reassure",
    "visual   scene : calm room  EMOTION:anxious  situation  :exam  response strategy: reassure",
    "### Visual Scene:\ncalm room\n### Emotions:\nanxious\n### Situation:\nexam\n### Response  Strategy:\nreassure",
])
def test_aspect_labels_tolerate_markdown_case_and_spaces(thought):
    assert analyse_thinking(thought)["aspects"] == {a: True for a in ASPECTS}


def test_parsed_details_reach_the_output():
    out = parse("<think> **Emotion:** neutral **Situation:** Unknown **Response Strategy:** ask </think><response> How so? </response>", "flexible-cot")
    assert out.format_ok and out.response == "How so?"
    assert out.details["aspects"] == {"visual_scene": False, "emotion": True, "situation": True, "response_strategy": True}
    assert out.details["emotion_neutral"] and out.details["situation_unknown"]


def test_a_run_records_mode_and_parse(tmp_path):
    from harness.runner import RunConfig, run

    outputs = ["<think> Emotion: sad. Response Strategy: ask. </think><response> What happened? </response>", "no tags at all"]
    config = RunConfig(task="mesc", model="scripted", task_args={"prompt": "fires", "frames_dir": "off"}, model_args={"outputs": outputs},
                       limit=2, metrics=["bleu-2", "rouge-l"], output_dir=tmp_path / "runs", use_cache=False)
    result = run(config, progress=False)
    header = json.loads((result.run_dir / "run.json").read_text())
    assert header["task_args"] == {"prompt": "fires", "frames_dir": "off"}
    records = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert [r["response"] for r in records] == ["What happened?", "no tags at all"]
    assert [r["format_ok"] for r in records] == [True, False]
    assert records[0]["parse_details"]["aspects"]["emotion"] is True
    assert result.summary.format_errors == 1

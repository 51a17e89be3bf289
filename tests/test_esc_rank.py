"""ESC-RANK (`simulators/esc_rank.py`): the prompt rebuilt from an ESC-Eval clone's files, one adapter per
dimension and language on one base model (hf), the two parse rules, the one-line errors, and
`harness run --task esc-eval --judge esc-rank` end to end. The clone is a fake one written here with
placeholder text in the released files' shape; the base is the tiny random Llama of test_hf_model with 14
random LoRA adapters in the released folder layout. Offline, CPU."""
import hashlib
import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.contract import DialogueTurn, Grader, SampleRecord
from harness.errors import HarnessError
from simulators import esc_rank
from simulators.esc_eval_judge import DIMENSIONS, JUDGE
from simulators.esc_rank import ADAPTER_NAMES, ESCRankJudge, adapter_folders, read_scorer

CODES = list(DIMENSIONS.values())
DIMS = list(DIMENSIONS)

# placeholder text, in the shape of the released score.py and result/<date>/*.json (none of their prompt text)
SCORER = textwrap.dedent('''
    import json
    class Judge():
        def __call__(self, message, type=None):
            return "0"

    prompt_EN = [{en}]
    prompt_ZH = [{zh}]

    if __name__ == "__main__":
        dimention_list = [{words}]
        key_list = [{keys}]
        for file in []:
            for _, tem in enumerate(data.items()):
                index, item = tem
                for index_d, dimention in enumerate(dimention_list):
                    dialogue = '\\n\\n'.join(item).replace("SUP", "<<S>>").replace("SEEK：", "<<U>>")
                    prompt1 = prompt_list[index_d] + "[DIALOGUE]\\n" + dialogue.strip() + "\\n"
                    prompt1 += '[ASK ' + dimention + ' END]'
''').format(en=", ".join(f'"EN-RUBRIC-{c}\\n"' for c in CODES), zh=", ".join(f'"ZH-RUBRIC-{c}\\n"' for c in CODES),
            words=", ".join(f'"word-{c}"' for c in CODES), keys=", ".join(f'"{c}"' for c in CODES))
TRANSCRIPT = {"0": ["SUP：Hi, placeholder greeting.", "SEEK：placeholder seeker line"]}
MODEL_CODE = 'class M:\n    def chat(self, tokenizer, query, history=[], meta_instruction="SYSTEM-PLACEHOLDER"):\n        pass\n'
TURNS = [DialogueTurn(role="supporter", text="Hello there.", details={"greeting": True}), DialogueTurn(role="seeker", text="I feel low."),
         DialogueTurn(role="supporter", text="I am sorry.")]


def write_clone(folder: Path, scorer: str = SCORER, transcripts: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "score.py").write_text(scorer, encoding="utf-8")
    (folder / "result" / "2024-06-24").mkdir(parents=True, exist_ok=True)
    for name, content in (transcripts or {"a_en.json": TRANSCRIPT, "a_zh.json": TRANSCRIPT}).items():
        (folder / "result" / "2024-06-24" / name).write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    return write_clone(tmp_path_factory.mktemp("ESC-Eval"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny base (with a placeholder modeling_internlm2.py) and the 14 adapters, each its own random weights."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    import torch
    import transformers
    from test_hf_model import build_text_model

    root = tmp_path_factory.mktemp("esc-rank")
    base = build_text_model(root / "internlm2")
    (base / "modeling_internlm2.py").write_text(MODEL_CODE, encoding="utf-8")
    adapters = root / "ESC-RANK"
    for seed, name in enumerate(ADAPTER_NAMES, start=1):
        torch.manual_seed(seed)
        lora = peft.get_peft_model(transformers.AutoModelForCausalLM.from_pretrained(base),
                                   peft.LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        lora.save_pretrained(adapters / name)
    return base, adapters


def judge_args(clone: Path, base: Path, adapters: Path, **extra) -> dict:
    return {"esc_eval_repo": str(clone), "model": str(base), "adapters_dir": str(adapters), "dtype": "float32", "device": "cpu",
            "batch_size": 4, "threads": 1, "max_tokens": 6, **extra}


@pytest.fixture(scope="module")
def rank(clone, built):
    model = esc_rank.ESCRankModel(None, **judge_args(clone, *built))
    yield model
    model.close()


# --------------------------------------------------------------------------- the prompt, from the clone


def test_the_prompt_is_rebuilt_in_the_scorers_shape_from_the_clone(clone):
    prompts = read_scorer(clone)
    dialogue = "<<S>>：Hello there.\n\n<<U>>I feel low.\n\n<<S>>：I am sorry."  # the transcripts' labels, then score.py's replaces
    assert prompts.dialogue(TURNS) == dialogue
    assert prompts.prompt("empathic", TURNS, "en") == f"EN-RUBRIC-empathic\n[DIALOGUE]\n{dialogue}\n[ASK word-empathic END]"
    assert prompts.prompt("tech", TURNS, "zh").startswith("ZH-RUBRIC-tech\n[DIALOGUE]\n")
    assert prompts.files == {name: hashlib.sha256((clone / name).read_bytes()).hexdigest()
                             for name in ("score.py", "result/2024-06-24/a_en.json", "result/2024-06-24/a_zh.json")}


def test_each_dimension_names_its_own_adapter_with_chats_system_prompt_and_greedy_decoding(clone):
    judge = ESCRankJudge(read_scorer(clone), system="SYS")
    for language, suffix in (("en", "_en"), ("zh", "")):
        record = SampleRecord(index=0, id="x", history=[], reference="", labels={"language": language}, output="", response="", dialogue=TURNS)
        requests = judge.requests(record)
        assert list(requests) == DIMS
        assert [r.adapter for r in requests.values()] == [f"{c}{suffix}" for c in CODES]
        assert all(r.messages[0].role == "system" and r.messages[0].content == "SYS" and r.messages[1].role == "user" for r in requests.values())
        assert all(r.generation.temperature == 0.0 and r.generation.max_tokens == 1024 for r in requests.values())


@pytest.mark.parametrize("scorer, what", [
    (SCORER.replace("prompt_ZH", "prompt_CN"), "prompt_ZH"),
    (SCORER.replace('"EN-RUBRIC-overall\\n"', ""), "prompt_EN is not a list of 7 strings"),
    (SCORER.replace('"human", "tech"', '"tech", "human"'), "key_list"),
    (SCORER.replace('dialogue.strip()', 'dialogue'), "unexpected term"),
    ("def broken(:\n", "cannot be read as Python"),
])
def test_a_clone_file_not_in_the_released_shape_is_one_line(tmp_path, scorer, what):
    folder = write_clone(tmp_path / "clone", scorer=scorer)
    with pytest.raises(HarnessError) as caught:
        read_scorer(folder)
    message = str(caught.value)
    assert "\n" not in message and "score.py" in message and what in message and "restore it" in message


def test_a_missing_clone_or_file_is_one_line(tmp_path):
    other = {"0": ["OTHER：hi", "SEEK：x"]}
    for repo, what in ((None, "esc_eval_repo= is missing"), (tmp_path / "nowhere", "has no score.py"),
                       (write_clone(tmp_path / "c", transcripts={"a.json": {"0": ["no colon", "here"]}}), "with two speakers"),
                       (write_clone(tmp_path / "d", transcripts={"a.json": TRANSCRIPT, "b.json": other}), "disagree on the speaker labels")):
        with pytest.raises(HarnessError) as caught:
            read_scorer(repo)
        assert "\n" not in str(caught.value) and what in str(caught.value) and ("clone" in str(caught.value) or "restore" in str(caught.value))


def test_a_missing_adapter_folder_is_one_line_naming_it(tmp_path):
    for name in ADAPTER_NAMES:
        (tmp_path / name).mkdir()
        if name != "tech_en":
            (tmp_path / name / "adapter_config.json").write_text("{}")
    with pytest.raises(HarnessError) as caught:
        adapter_folders(tmp_path)
    assert "\n" not in str(caught.value) and "tech_en" in str(caught.value) and "fluency" not in str(caught.value)
    with pytest.raises(HarnessError, match="adapters_dir= is missing"):
        adapter_folders(None)


# --------------------------------------------------------------------------- parsing


def test_both_parse_rules_on_the_same_raw_answers(clone):
    answers = {"3": (3, 3), "Score: 3 (scale 0-4)": (3, 0), "10": (None, 0), "2 out of 4": (2, 2), "I cannot rate this.": (None, None),
               "评分：4": (4, 4), "4, maybe 3": (None, 3)}
    strict, original = ESCRankJudge(read_scorer(clone)), ESCRankJudge(read_scorer(clone), parse="original")
    for answer, (harness_value, released_value) in answers.items():
        assert strict.parse("empathy", answer) == harness_value, answer
        assert original.parse("empathy", answer) == released_value, answer  # the released rule; its -1 is missing
    assert strict.outcome({}, {})["judge_parse"] == "harness" and original.outcome({}, {})["judge_parse"] == "original"
    with pytest.raises(HarnessError, match="parse must be one of"):
        ESCRankJudge(read_scorer(clone), parse="loose")


# --------------------------------------------------------------------------- on the tiny base with 14 adapters


def test_each_request_reaches_its_own_adapter_in_batches_grouped_by_adapter(rank, monkeypatch):
    hf = rank.inner
    assert set(rank.adapters()) == set(ADAPTER_NAMES)
    seen: list[list[str | None]] = []
    real = type(hf)._generate_batch

    def spy(self, batch):
        seen.append([p.adapter for p in batch])
        return real(self, batch)

    monkeypatch.setattr(type(hf), "_generate_batch", spy)
    record = lambda i, language: SampleRecord(index=i, id=f"d{i}", history=[], reference="", labels={"language": language}, output="",
                                              response="", dialogue=TURNS[: 2 + i % 2])
    judge = rank.grader_for(JUDGE)
    requests = [r for i in range(3) for r in judge.requests(record(i, "en")).values()] + list(judge.requests(record(3, "zh")).values())
    outputs = rank.generate(requests)
    assert len(outputs) == len(requests) == 28
    assert all(len(set(batch)) == 1 for batch in seen)  # one adapter per batch
    sizes = {name: sum(len(b) for b in seen if b[0] == name) for name in ADAPTER_NAMES}
    assert sizes == {**{f"{c}_en": 3 for c in CODES}, **{c: 1 for c in CODES}}  # every en dimension's three requests together
    assert all(len(b) <= 4 for b in seen)
    # the same prompt through two adapters: different weights answer
    same = requests[0]
    a, b = rank.generate([same, same.model_copy(update={"adapter": "tech_en"})])
    assert a.text != b.text


def test_the_model_refuses_other_graders_and_args_it_sets_itself(rank, clone, built):
    class Other(Grader):  # a grader that is not the esc-eval judge
        name = "other"

        def requests(self, item):
            return {}

        def parse(self, aspect, answer):
            return None

    with pytest.raises(HarnessError, match="ESC-Eval dialogues only"):
        rank.grader_for(Other())
    with pytest.raises(HarnessError, match="adapters= is set by esc-rank"):
        esc_rank.ESCRankModel(None, **{**judge_args(clone, *built), "adapters": "a:/x"})


def test_a_base_without_internlm2s_code_needs_system_none(clone, built, tmp_path):
    with pytest.raises(HarnessError) as caught:
        esc_rank.chat_system_prompt(tmp_path)
    assert "modeling_internlm2.py" in str(caught.value) and "system=none" in str(caught.value) and "\n" not in str(caught.value)
    assert esc_rank.chat_system_prompt(built[0])[0] == "SYSTEM-PLACEHOLDER"


def test_cli_run_with_esc_rank_end_to_end(tmp_path, data_root, clone, built):
    base, adapters = built
    args = ",".join(f"{k}={v}" for k, v in judge_args(clone, base, adapters, parse="original", trust_remote_code="true").items())
    out = CliRunner().invoke(main, ["run", "--task", "esc-eval", "--task-args", "rounds=1", "--model", "scripted", "--model-args",
                                    "default=I am here for you.", "--seeker", "scripted", "--seeker-args", "default=I feel low.",
                                    "--judge", "esc-rank", "--judge-args", args, "--limit", "2", "--output-dir", str(tmp_path / "runs"),
                                    "--no-cache", "--data-dir", str(data_root)])
    assert out.exit_code == 0, out.output
    run_dir = Path(out.stdout.strip().splitlines()[-1])
    header = json.loads((run_dir / "run.json").read_text())
    judge = header["roles"]["judge"]
    assert judge["model"] == "esc-rank" and judge["model_args"]["parse"] == "original"
    facts = judge["facts"]
    assert facts["parse"] == "original" and facts["files"] == read_scorer(clone).files
    assert facts["system"] == {"file": "modeling_internlm2.py", "sha256": hashlib.sha256((base / "modeling_internlm2.py").read_bytes()).hexdigest()}
    assert set(facts["adapters"]) == set(ADAPTER_NAMES)
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        outcome = record["outcome"]
        assert outcome["judge_parse"] == "original" and outcome["judge_prompts"].startswith("esc-rank/")
        assert set(outcome["judge"]) == set(DIMS) and set(outcome["judge_raw"]) == set(DIMS)
        for dimension, raw in outcome["judge_raw"].items():  # the stored values are the released rule on the raw answers
            expected = next((int(d) for d in "01234" if d in raw), None)
            assert outcome["judge"][dimension] == expected
    # `harness esc-eval rescore` with the same judge and the harness's rule: the same raw answers (greedy), read strictly
    args = args.replace("parse=original", "parse=harness")
    again = CliRunner().invoke(main, ["esc-eval", "rescore", str(run_dir), "--judge", "esc-rank", "--judge-args", args,
                                      "--output-dir", str(tmp_path / "rescored"), "--no-cache", "--resamples", "0"])
    assert again.exit_code == 0, again.output
    rescored = Path(again.stdout.strip().splitlines()[-1])
    assert json.loads((rescored / "run.json").read_text())["roles"]["judge"]["facts"]["parse"] == "harness"
    by_id = {r["id"]: r["outcome"] for r in records}
    from simulators.esc_eval_judge import parse_score
    for line in (rescored / "samples.jsonl").read_text().splitlines():
        record = json.loads(line)
        outcome = record["outcome"]
        assert outcome["judge_parse"] == "harness" and outcome["judge_raw"] == by_id[record["id"]]["judge_raw"]
        assert outcome["judge"] == {d: parse_score(raw) for d, raw in outcome["judge_raw"].items()}


def test_cli_errors_are_one_line_before_any_run_folder(tmp_path, data_root, clone, built):
    base, adapters = built
    for args, what in ((judge_args(tmp_path / "no-clone", base, adapters), "not an ESC-Eval clone"),
                       (judge_args(clone, base, tmp_path), "lacks the ESC-RANK adapter folder(s)")):
        text = ",".join(f"{k}={v}" for k, v in args.items())
        out = CliRunner().invoke(main, ["run", "--task", "esc-eval", "--model", "scripted", "--seeker", "scripted", "--judge", "esc-rank",
                                        "--judge-args", text, "--limit", "1", "--output-dir", str(tmp_path / "runs"), "--data-dir", str(data_root)])
        assert out.exit_code != 0 and what in out.output, out.output
        assert len([l for l in out.output.strip().splitlines() if l.strip()]) == 1, out.output
        assert not (tmp_path / "runs").exists()

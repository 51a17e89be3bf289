"""One command-line vocabulary (harness/options.py): the unified names, the deprecated ones still
working with one warning line, roles by --role NAME=SPEC with --seeker/--judge as short forms."""
import click
import pytest
from click.testing import CliRunner

from harness import options
from harness.cli import main
from harness.errors import HarnessError
from harness.lifecycle import ModelSpec


@click.command()
@options.output_dir(None, "Out", deprecated=("--out",))
@options.resamples(deprecated=("--bootstrap",))
@options.roles
def probe(output_dir, resamples, roles):
    click.echo(f"{output_dir}|{resamples}|{sorted((k, v.model, sorted(v.model_args.items())) for k, v in roles.items())}")


def call(*args):
    out = CliRunner().invoke(probe, list(args))
    return out.exit_code, out.stdout.strip(), out.stderr, out.exception


def test_new_names_and_defaults():
    assert call()[:3] == (0, "None|1000|[]", "")
    assert call("--output-dir", "x", "--resamples", "5")[:3] == (0, "x|5|[]", "")


def test_old_names_keep_working_with_one_deprecation_line():
    code, out, err, _ = call("--out", "y", "--bootstrap", "7")
    assert (code, out) == (0, "y|7|[]")
    assert err.splitlines() == ["warning: --out is deprecated and will be removed in the next release; use --output-dir.",
                                "warning: --bootstrap is deprecated and will be removed in the next release; use --resamples."]
    assert call("--bootstrap", "7", "--resamples", "7")[:2] == (0, "None|7|[]")  # both, agreeing
    code, _, _, exc = call("--bootstrap", "7", "--resamples", "8")
    assert isinstance(exc, HarnessError) and "--bootstrap and --resamples disagree" in str(exc)


def test_roles_by_name_and_their_short_forms():
    code, out, _, _ = call("--role", "judge=openai:gpt-4o", "--role-args", "judge=temperature=0,max_tokens=8", "--seeker", "local")
    assert code == 0 and out == "None|1000|[('judge', 'openai', [('max_tokens', 8), ('model', 'gpt-4o'), ('temperature', 0)]), ('seeker', 'local', [])]"
    assert call("--judge", "scripted", "--judge-args", "default=x")[1] == "None|1000|[('judge', 'scripted', [('default', 'x')])]"
    for args, message in ((["--role", "judge"], "--role 'judge': write NAME=VALUE"),
                          (["--role-args", "critic=x=1"], "--role-args critic=... given without its model"),
                          (["--role", "judge=a", "--judge", "b"], "role 'judge' is given twice")):
        code, _, _, exc = call(*args)
        assert isinstance(exc, HarnessError) and message in str(exc), (args, exc)


def test_model_spec_parses_adapter_and_model():
    assert ModelSpec.parse("openai:gpt-4o", {"temperature": 0}) == ModelSpec("openai", {"temperature": 0, "model": "gpt-4o"})
    assert ModelSpec.parse("retrieval") == ModelSpec("retrieval", {})


@pytest.mark.parametrize("command", [["run"], ["score"], ["compare"], ["ab", "import"], ["ab", "judge"], ["esc-eval", "rescore"],
                                     ["leaderboard"], ["data", "frames"], ["epitome", "train"]])
def test_every_command_speaks_the_same_vocabulary(command):
    text = CliRunner().invoke(main, [*command, "--help"]).output
    for old in ("--bootstrap", "--runs ", "--out DIRECTORY", "--out PATH"):
        assert old not in text, (command, old)
    if "resamples" in text.lower() or command[0] in ("run", "score", "compare", "leaderboard"):
        assert "--resamples" in text

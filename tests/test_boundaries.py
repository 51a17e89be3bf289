"""The engine knows no plugin: nothing under harness/ imports tasks, simulators, baselines or reports
(plugins depend on the engine, never the reverse)."""
import ast
from pathlib import Path

PLUGINS = ("tasks", "simulators", "baselines", "reports")
ENGINE = Path(__file__).resolve().parent.parent / "harness"


def plugin_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in PLUGINS]
    return found


def test_the_checker_sees_every_form_of_import():
    source = "import tasks.mesc\nfrom baselines.epitome import metric\ndef f():\n    from reports import ab\n    import simulators as s\nfrom . import store\n"
    assert plugin_imports(source) == ["tasks.mesc", "baselines.epitome", "reports", "simulators"]


def test_no_module_of_the_engine_imports_a_plugin():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 20  # the whole engine is read
    offending = {str(f.relative_to(ENGINE.parent)): found for f in files if (found := plugin_imports(f.read_text(encoding="utf-8")))}
    assert offending == {}

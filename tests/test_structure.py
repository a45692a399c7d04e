"""The house rules that code can check: the engine (cnn/) never imports Streamlit, and the one change the app
makes to Streamlit is installed by the entry script and says so loudly when it cannot be."""
import ast
import logging
import subprocess
import sys

from tests.conftest import ROOT


def test_no_engine_module_imports_streamlit():
    for path in sorted((ROOT / "cnn").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "streamlit" or n.startswith("streamlit.") for n in names), \
                f"{path.relative_to(ROOT)} imports {names}"


def test_importing_the_whole_engine_loads_no_streamlit():
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for p in (ROOT / "cnn").rglob("*.py") if p.stem != "__main__")
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_the_entry_script_installs_the_keras_hook():
    from streamlit.runtime.scriptrunner import script_runner
    from streamlit.testing.v1 import AppTest

    from app import hooks, warmup

    original = script_runner._clean_problem_modules
    script_runner._clean_problem_modules = lambda: None  # as a fresh process has it: Streamlit's own
    try:
        assert not hooks.installed()
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
        at.run()
        assert not at.exception
        assert hooks.installed()
    finally:
        warmup.wait(120)  # its TensorFlow import must not race a later test's in another thread
        script_runner._clean_problem_modules = original


def test_a_streamlit_without_the_hook_gets_a_clear_warning(monkeypatch, caplog):
    from streamlit.runtime.scriptrunner import script_runner

    from app import hooks

    monkeypatch.delattr(script_runner, "_clean_problem_modules")
    with caplog.at_level(logging.WARNING, logger="cnn_studio"):
        assert hooks.install() is False
    assert "_clean_problem_modules is gone" in caplog.text and not hooks.installed()

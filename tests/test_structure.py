"""The house rules that code can check: the engine (cnn/) never imports Streamlit, and the one change the app
makes to Streamlit is installed by the entry script and says so loudly when it cannot be."""
import ast
import logging
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_no_engine_module_imports_streamlit():
    for path in sorted((ROOT / "cnn").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "streamlit" or n.startswith("streamlit.") for n in names), \
                f"{path.relative_to(ROOT)} imports {names}"


def test_importing_the_whole_engine_loads_neither_streamlit_nor_tensorflow():
    # TensorFlow is imported inside the functions that need it: Home and the CLI's help never wait for it.
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for p in (ROOT / "cnn").rglob("*.py") if p.stem != "__main__")
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint([m for m in ('streamlit', 'tensorflow', 'keras') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


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


# ---------------------------------------------------------------------------
# The engine's layers: each package imports only from its own layer or lower ones, and no module imports
# itself back through others (every import counts, at the top of a module or inside a function).
# ---------------------------------------------------------------------------

LAYERS = ["core", "model", "data", "figures", "analysis", "explain", "teach", "store", "run", "__main__"]
MAX_LINES = 500


def engine_modules() -> dict[str, Path]:
    """Every engine module's dotted name → its file."""
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted((ROOT / "cnn").rglob("*.py"))}


def engine_imports() -> dict[str, set[str]]:
    """Each engine module → the engine modules it imports (a `from cnn.pkg import name` names the module
    cnn.pkg.name when there is one, else the package)."""
    modules = engine_modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                            for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != "cnn" and t != name}
    return graph


def layer_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else "core"
    return LAYERS.index(part)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph` (Tarjan's strongly connected components of more than one module)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_engine_module_is_in_a_layer():
    unknown = [m for m in engine_modules() if m != "cnn" and m.split(".")[1] not in LAYERS]
    assert not unknown, f"modules outside the layers {LAYERS}: {unknown}"


def test_the_engine_has_no_import_cycle():
    assert cycles(engine_imports()) == []


def test_no_engine_module_imports_from_a_higher_layer():
    wrong = [f"{m} ({LAYERS[layer_of(m)]}) imports {t} ({LAYERS[layer_of(t)]})"
             for m, targets in engine_imports().items() if m != "cnn" for t in sorted(targets)
             if layer_of(t) > layer_of(m)]
    assert not wrong, "\n".join(wrong)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_engine_module_is_over_500_lines():
    long = {m: n for m, p in engine_modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"engine modules over {MAX_LINES} lines: {long}"

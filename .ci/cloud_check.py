"""Run by .ci/cloud: inside a Python 3.12 environment made by uv from requirements.txt alone (as Streamlit
Community Cloud builds the app), import every module of the app and read one digit with the shipped model.

A requirement that does not resolve or import on Cloud's default Python fails here, not on the deploy."""
import importlib
import os
import pkgutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A registry of its own: the shipped models come from the project's models/ folder, nothing is written there.
os.environ["CNN_MODELS_DIR"] = tempfile.mkdtemp(prefix="cloud-models-")
os.environ["CNN_CACHE_DIR"] = tempfile.mkdtemp(prefix="cloud-cache-")


def import_every_module() -> list[str]:
    """Import each module of the engine (the app glue needs Streamlit's runtime: the pages below import it)."""
    import cnn

    names = [info.name for info in pkgutil.walk_packages(cnn.__path__, prefix="cnn.")]
    for name in names:
        importlib.import_module(name)
    return names


def read_one_digit() -> tuple[int, int, float]:
    """The shipped default model reads the embedded sample's first test digit: (label, prediction, probability)."""
    from cnn.analysis.inference import predict_proba
    from cnn.data.load import load_dataset
    from cnn.store.registry import load_model, shipped_names

    model = load_model(shipped_names()[0])
    data = load_dataset("mnist-sample", limit=(10, 10))
    probs = predict_proba(model, data.x_test[:1])[0]
    return int(data.y_test[0]), int(probs.argmax()), float(probs.max())


def run_every_page() -> int:
    """Every page runs under Streamlit's AppTest without an exception; returns the number of pages run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180).run()
    problems = [f"home: {e.value}" for e in at.exception]
    pages = sorted(p.name for p in (ROOT / "pages").glob("*.py") if p.name != "home.py")
    for page in pages:
        at.switch_page(f"pages/{page}").run()
        problems += [f"{page}: {e.value}" for e in at.exception]
    if problems:
        raise SystemExit(f"cloud check: the app raised {problems}")
    return 1 + len(pages)


if __name__ == "__main__":
    modules = import_every_module()
    label, guess, p = read_one_digit()
    pages = run_every_page()
    print(f"cloud check on Python {sys.version.split()[0]}: {len(modules)} modules imported; the shipped model "
          f"read a {label} as {guess} ({p:.0%}); {pages} pages ran without an exception")
    if guess != label:
        raise SystemExit("cloud check: the shipped model misread the sample digit")

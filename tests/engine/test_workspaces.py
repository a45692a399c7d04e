"""Hosted mode: private workspaces (by account, browser cookie or session), the registry folder that follows a
visitor (and their training jobs), shipped models read-only everywhere, quotas, idle expiry, the cookie, and
caches bounded by bytes. Sign-in is tested with a stand-in identity (no OpenID Connect provider here)."""
import asyncio
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app import workspaces
from app.resources import SizedCache
from cnn.store import registry as reg
from cnn.core.errors import RegistryError


@pytest.fixture
def shipped(tmp_path, monkeypatch, trained):
    """A shipped-models folder holding 'mnist-default' (the small test model under that name)."""
    result, spec, data = trained
    folder = tmp_path / "shipped"
    with reg.using_models_dir(folder):  # (nothing ships yet: conftest's CNN_SHIPPED_DIR is empty)
        reg.save_model("mnist-default", result.model, spec, result.history, {"dataset": data.name})
    (folder / "shipped.json").write_text(json.dumps({"models": ["mnist-default"]}))
    monkeypatch.setenv("CNN_SHIPPED_DIR", str(folder))
    return folder


def test_shipped_models_are_listed_everywhere_and_read_only(registry, shipped, trained):
    result, spec, data = trained
    assert [i.name for i in reg.list_models()] == ["mnist-default"]  # an empty registry still lists it
    assert reg.model_info("mnist-default").path == shipped / "mnist-default"
    for attempt in (lambda: reg.delete_model("mnist-default"), lambda: reg.rename_model("mnist-default", "x"),
                    lambda: reg.save_model("mnist-default", result.model, spec, result.history, {})):
        with pytest.raises(RegistryError, match="ships with CNN Studio: it is read-only"):
            attempt()
    # A training that asked for the name is never lost: it is saved beside it.
    info = reg.save_model("mnist-default", result.model, spec, result.history, {}, if_taken="rename")
    assert info.name == "mnist-default-2" and (shipped / "mnist-default").is_dir()
    with pytest.raises(RegistryError, match="read-only"):
        reg.rename_model("mnist-default-2", "mnist-default")
    assert reg.unique_name("mnist-default") == "mnist-default-3"


def test_each_workspace_has_its_own_registry_and_jobs_save_into_theirs(tmp_path, trained):
    from cnn.run.jobs import TrainingJob

    result, spec, data = trained
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    with reg.using_models_dir(alice):
        reg.save_model("same", result.model, spec, result.history, {"dataset": data.name})
        # A job started in Alice's context saves into Alice's folder, whatever its thread's context is.
        tiny = spec.copy()
        tiny.train.epochs = 1
        job = TrainingJob(tiny, data, "trained", film=False).start()
    with reg.using_models_dir(bob):
        assert [i.name for i in reg.list_models()] == []
        reg.save_model("same", result.model, spec, result.history, {"dataset": data.name})
    job.join(300)
    assert job.snapshot().state == "completed"
    assert sorted(p.name for p in alice.iterdir() if not p.name.startswith(".")) == ["same", "trained"]
    assert sorted(p.name for p in bob.iterdir() if not p.name.startswith(".")) == ["same"]


class FakeState(dict):
    def setdefault(self, key, value):
        return super().setdefault(key, value)


def test_who_the_visitor_is(monkeypatch, tmp_path):
    monkeypatch.setenv("CNN_WORKSPACES_DIR", str(tmp_path))
    monkeypatch.delenv("CNN_HOSTED", raising=False)
    monkeypatch.setattr(workspaces, "hosted", lambda: False)
    local = workspaces.current()
    assert (local.id, local.kind, local.root, local.private) == ("local", "local", None, False)

    monkeypatch.setattr(workspaces, "hosted", lambda: True)
    state = FakeState()
    monkeypatch.setattr(workspaces.st, "session_state", state)
    monkeypatch.setattr(workspaces, "signed_in_user", lambda: None)
    monkeypatch.setattr(workspaces, "_cookie", lambda: None)
    session = workspaces.current()  # no cookie reached the session: a token of this session only
    assert session.kind == "session" and len(state[workspaces.TOKEN]) == 32 and session.id == workspaces.current().id
    monkeypatch.setattr(workspaces, "_cookie", lambda: "ab" * 16)
    browser = workspaces.current()
    assert browser.kind == "browser" and browser.id != session.id and browser.root == tmp_path / browser.id / "models"
    assert "ab" * 16 not in str(browser.root)  # the folder is a hash of the token, never the token
    # Signed in (a stand-in identity): the account's workspace, the same from any browser or session.
    monkeypatch.setattr(workspaces, "signed_in_user", lambda: ("https://issuer|user-42", "ana@example.org"))
    account = workspaces.current()
    monkeypatch.setattr(workspaces, "_cookie", lambda: "cd" * 16)
    monkeypatch.setattr(workspaces.st, "session_state", FakeState())
    assert account.kind == "account" and workspaces.current().id == account.id != browser.id
    assert account.label == "your account (ana@example.org)"
    other = workspaces.current
    monkeypatch.setattr(workspaces, "signed_in_user", lambda: ("https://issuer|user-43", "bo@example.org"))
    assert other().id != account.id


def test_quotas_and_idle_expiry(monkeypatch, tmp_path, trained):
    result, spec, data = trained
    monkeypatch.setenv("CNN_WORKSPACES_DIR", str(tmp_path))
    monkeypatch.setenv("CNN_MAX_MODELS", "2")
    ws = workspaces.Workspace("w" * 32, "browser", tmp_path / ("w" * 32) / "models", "this browser")
    assert workspaces.quota_problem(ws) is None
    with reg.using_models_dir(ws.root):
        for name in ("one", "two"):
            reg.save_model(name, result.model, spec, result.history, {"dataset": data.name})
    assert "holds 2 models, the most it may" in workspaces.quota_problem(ws)
    assert workspaces.usage(ws).text().startswith("2 of 2 models")
    monkeypatch.setenv("CNN_MAX_MODELS", "20")
    monkeypatch.setenv("CNN_WORKSPACE_MB", "0.01")
    assert "MB, the most it may" in workspaces.quota_problem(ws)
    assert workspaces.quota_problem(workspaces.Workspace("local", "local", None, "")) is None
    # Anonymous workspaces idle longer than CNN_WORKSPACE_IDLE_HOURS go; accounts stay.
    for name, kind in (("anon", "browser"), ("acct", "account"), ("fresh", "session")):
        (tmp_path / name).mkdir()
        (tmp_path / name / workspaces.LAST_USED).write_text(kind)
    old = time.time() - 48 * 3600
    for name in ("anon", "acct"):
        os.utime(tmp_path / name / workspaces.LAST_USED, (old, old))
    removed = workspaces.expire_idle()
    assert [p.name for p in removed] == ["anon"]
    assert (tmp_path / "acct").is_dir() and (tmp_path / "fresh").is_dir()


def test_the_cookie_is_set_once_on_a_page_load():
    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def collect(message):
        sent.append(message)

    middleware = workspaces.CookieMiddleware(app)

    def call(path, headers=()):
        sent.clear()
        # In a thread of its own: an earlier test's event loop (Playwright's) may still run in this one.
        scope = {"type": "http", "path": path, "headers": list(headers), "scheme": "https"}
        worker = threading.Thread(target=asyncio.run, args=(middleware(scope, None, collect),))
        worker.start()
        worker.join()
        return [v for k, v in sent[0]["headers"] if k == b"set-cookie"]

    cookie = call("/")
    assert len(cookie) == 1 and b"HttpOnly" in cookie[0] and b"Secure" in cookie[0] and b"SameSite=Lax" in cookie[0]
    token = cookie[0].split(b";")[0].split(b"=")[1]
    assert len(token) == 32  # 128 random bits
    assert call("/predict") and call("/") != cookie  # every new browser its own token
    assert call("/", [(b"cookie", b"cnn_workspace=" + token)]) == []  # a browser that has one keeps it
    assert call("/_stcore/health") == [] and call("/static/js/main.js") == []


def test_sized_cache_is_bounded_by_bytes_and_makes_each_value_once():
    made = []

    def make(key, size):
        def build():
            made.append(key)
            time.sleep(0.05)
            return np.zeros(size, np.uint8)
        return build

    cache = SizedCache(limit=1000, sizeof=lambda a: a.nbytes)
    threads = [threading.Thread(target=cache.get, args=("a", make("a", 400))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == ["a"]  # four visitors at once: made once
    cache.get("b", make("b", 400))
    cache.get("a", make("a", 400))  # used: now the most recent
    cache.get("c", make("c", 400))  # 1,200 bytes > 1,000: the least recently used ('b') goes
    assert cache.nbytes == 800 and len(cache) == 2
    cache.get("b", make("b", 400))
    assert made == ["a", "b", "c", "b"]
    cache.get("huge", make("huge", 5000))  # larger than the limit alone: kept (the newest always is)
    assert len(cache) == 1 and cache.nbytes == 5000


def test_settings_can_come_from_streamlit_secrets(tmp_path):
    """Community Cloud's Secrets box: `CNN_HOSTED = true` turns hosting on, and numeric settings reach the
    environment that the rest of the app reads."""
    import subprocess
    import sys

    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text("CNN_HOSTED = true\nCNN_MAX_JOBS = 3\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CNN_HOSTED", "CNN_MAX_JOBS")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    code = "from app import workspaces, jobs; print(workspaces.hosted(), jobs.default_cap())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split()[-2:] == ["True", "3"], out.stderr[-2000:]
    (tmp_path / ".streamlit" / "secrets.toml").unlink()
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split()[-2:][0] == "False", out.stderr[-2000:]

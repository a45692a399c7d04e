"""Who the visitor is, and which registry folder is theirs.

Local mode (the default, for `streamlit run` on one's own machine): one workspace, the whole registry, as
always. Hosted mode (CNN_HOSTED=1 — on Community Cloud, a root-level line `CNN_HOSTED = "1"` in the app's
Secrets, which Streamlit also exposes as an environment variable): every visitor works in a private folder,
  - by account when Streamlit's sign-in is configured and the visitor has signed in (st.login / st.user):
    the same workspace on every device and in every session;
  - else by an unguessable browser token (128 random bits) kept in an HttpOnly cookie that the server sets on
    the first page load (streamlit_app.py's server app) — so a shared link does not share the workspace;
  - else (no cookie reached the session, e.g. a test harness) by a token of this browser session only.
The folder name is a hash of the identity, never the identity itself.
Shipped models (models/shipped.json) are shown to everyone and are read-only in both modes.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

COOKIE = "cnn_workspace"  # the browser token's cookie (set by the server app, see cookie_middleware)
TOKEN = "workspace_token"  # session key: this session's own token when no cookie reached it
LAST_USED = ".last-used"  # a workspace folder's use stamp (its mtime), for idle expiry


def load_settings() -> None:
    """Read .streamlit/secrets.toml if there is one: Streamlit puts its root keys with string or number values into
    the environment, so every CNN_* setting can be given either way (Community Cloud's Secrets box is the natural place there)."""
    try:
        "CNN_HOSTED" in st.secrets  # noqa: B015 — the lookup loads the file
    except Exception:  # noqa: BLE001 — no secrets file is the normal local case
        pass


def hosted() -> bool:
    """Whether the app runs hosted for many visitors (CNN_HOSTED, from the environment or Streamlit secrets)."""
    load_settings()
    value = os.environ.get("CNN_HOSTED")
    if value is None:  # TOML booleans do not reach the environment
        try:
            value = st.secrets.get("CNN_HOSTED")
        except Exception:  # noqa: BLE001 — no secrets file
            value = None
    return switched_on(value)


def switched_on(value) -> bool:
    """Whether a setting's value means on: 1, true, yes or on (any case); a TOML boolean true too."""
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def workspaces_dir() -> Path:
    """Where hosted workspaces live: CNN_WORKSPACES_DIR, else beside the upload cache."""
    from cnn.data.uploads import cache_dir

    return Path(os.environ.get("CNN_WORKSPACES_DIR") or cache_dir() / "workspaces").expanduser()


@dataclass(frozen=True)
class Workspace:
    id: str  # 'local', or a 32-hex hash of the visitor's identity
    kind: str  # 'local', 'account', 'browser' or 'session'
    root: Path | None  # the registry folder of this workspace (None = the registry's own default)
    label: str  # for people: "your account (ana@example.org)", "this browser", …

    @property
    def private(self) -> bool:
        return self.kind != "local"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def signed_in_user() -> tuple[str, str] | None:
    """(stable id, display name) of the signed-in visitor when Streamlit's authentication is configured."""
    try:
        user = st.user
        if not user.is_logged_in:
            return None
        ident = f"{user.get('iss', '')}|{user.get('sub') or user.get('email')}"
        return ident, str(user.get("email") or user.get("name") or "your account")
    except Exception:  # noqa: BLE001 — auth not configured (no [auth] in secrets): nobody is signed in
        return None


def auth_configured() -> bool:
    """Whether st.login can be offered (an [auth] section in the secrets)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001
        return False


def current() -> Workspace:
    """This visitor's workspace (and it is marked used now)."""
    if not hosted():
        return Workspace("local", "local", None, "this computer")
    user = signed_in_user()
    if user is not None:
        ident, label, kind = f"account:{user[0]}", f"your account ({user[1]})", "account"
    else:
        cookie = _cookie()
        if cookie:
            ident, label, kind = f"browser:{cookie}", "this browser", "browser"
        else:
            token = st.session_state.setdefault(TOKEN, secrets.token_hex(16))
            ident, label, kind = f"session:{token}", "this browser tab", "session"
    workspace_id = _digest(ident)
    root = workspaces_dir() / workspace_id / "models"
    _touch(root.parent, kind)
    return Workspace(workspace_id, kind, root, label)


def classes_dir(workspace: Workspace) -> Path:
    """Where this workspace's own classes live (cnn.data.own.ClassSet): hosted, inside the private workspace;
    locally CNN_CLASSES_DIR, else a my-classes/ folder beside the models folder."""
    from cnn.store import registry

    if workspace.root is not None:
        return workspace.root.parent / "classes"
    return Path(os.environ.get("CNN_CLASSES_DIR") or registry.models_dir().parent / "my-classes").expanduser()


def activate() -> Workspace:
    """This visitor's workspace, made the registry folder for the rest of this script run (pages call it in
    chrome.page_setup; callbacks, which run before the page, through chrome.in_workspace)."""
    from cnn.store import registry

    workspace = current()
    registry.use_models_dir(workspace.root)
    return workspace


def _cookie() -> str | None:
    """The browser token, if the cookie reached this session and looks like one of ours."""
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 — no request context (AppTest)
        return None
    return value if value and len(value) == 32 and all(c in "0123456789abcdef" for c in value) else None


def _touch(folder: Path, kind: str) -> None:
    """Mark a workspace used now (at most once a minute: a page run must not write on every rerun), and now
    and then forget the anonymous workspaces nobody has used for a while."""
    stamp = folder / LAST_USED
    try:
        if not stamp.exists() or time.time() - stamp.stat().st_mtime > 60:
            folder.mkdir(parents=True, exist_ok=True)
            stamp.write_text(kind)  # its kind, for expire_idle: accounts are kept, anonymous ones expire
            if time.time() - _expiry["last"] > 3600:
                _expiry["last"] = time.time()
                expire_idle()
    except OSError:
        pass


_expiry = {"last": 0.0}


# ---------------------------------------------------------------------------
# Quotas and idle expiry (hosted mode)
# ---------------------------------------------------------------------------

def _setting(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def max_models() -> int:
    """Models a private workspace may hold: CNN_MAX_MODELS (default 20)."""
    return int(_setting("CNN_MAX_MODELS", 20))


def max_bytes() -> int:
    """Disk a private workspace may use: CNN_WORKSPACE_MB (default 200 MB)."""
    return int(_setting("CNN_WORKSPACE_MB", 200) * 1e6)


def idle_hours() -> float:
    """Hours after which an anonymous workspace nobody has used is deleted: CNN_WORKSPACE_IDLE_HOURS (24)."""
    return _setting("CNN_WORKSPACE_IDLE_HOURS", 24)


@dataclass(frozen=True)
class Usage:
    models: int
    bytes: int

    def text(self) -> str:
        return (f"{self.models} of {max_models()} models, {self.bytes / 1e6:.1f} of {max_bytes() / 1e6:.0f} MB")


def usage(workspace: Workspace) -> Usage:
    """What a private workspace holds: its own models (not the shipped ones), and its own classes' bytes."""
    root = workspace.root
    if root is None or not root.is_dir():
        return Usage(0, 0)
    models = sum(1 for f in root.iterdir() if f.is_dir() and not f.name.startswith("."))
    size = sum(f.stat().st_size for folder in (root, classes_dir(workspace)) for f in folder.rglob("*") if f.is_file())
    return Usage(models, size)


def quota_problem(workspace: Workspace) -> str | None:
    """Why this workspace may not save another model now, or None (always None locally)."""
    if not workspace.private:
        return None
    used = usage(workspace)
    if used.models >= max_models():
        return (f"your workspace holds {used.models} models, the most it may: delete one on Models before "
                "training or uploading another")
    if used.bytes >= max_bytes():
        return (f"your workspace uses {used.bytes / 1e6:.0f} MB, the most it may ({max_bytes() / 1e6:.0f} MB): "
                "delete a model on Models first")
    return None


def expire_idle(now: float | None = None) -> list[Path]:
    """Delete the anonymous workspaces not used for idle_hours(); account workspaces are kept. The folders
    removed."""
    import shutil

    now = time.time() if now is None else now
    removed = []
    root = workspaces_dir()
    for folder in root.iterdir() if root.is_dir() else []:
        stamp = folder / LAST_USED
        try:
            kind = stamp.read_text().strip() if stamp.is_file() else "session"
            idle = now - (stamp.stat().st_mtime if stamp.is_file() else folder.stat().st_mtime)
        except OSError:
            continue
        if kind != "account" and idle > idle_hours() * 3600:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


# ---------------------------------------------------------------------------
# The browser token's cookie, set by the server app on the first page load
# ---------------------------------------------------------------------------

class CookieMiddleware:
    """ASGI middleware: give every browser a random workspace token in an HttpOnly cookie on its first HTTP
    request (the page load), so the websocket session that follows carries it (st.context.cookies)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        page_load = scope["type"] == "http" and not path.startswith("/_stcore") and "." not in path.rsplit("/", 1)[-1]
        if not page_load or COOKIE.encode() in dict(scope.get("headers", [])).get(b"cookie", b""):
            await self.app(scope, receive, send)
            return
        token = secrets.token_hex(16)
        secure = scope.get("scheme") == "https" or \
            dict(scope.get("headers", [])).get(b"x-forwarded-proto", b"") == b"https"
        cookie = (f"{COOKIE}={token}; Path=/; Max-Age={400 * 24 * 3600}; HttpOnly; SameSite=Lax"
                  + ("; Secure" if secure else "")).encode()

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

"""Every session-state key, the tab (what a browser refresh keeps) and the one flash-message helper.

A browser tab's working state — dataset, the spec being edited, the active model — lives in one `Tab` object.
The same object is kept in a server-wide memory under the tab's id, which the URL carries (`?sid=`), so a
refresh finds it again: changing a field of the tab is all it takes for a refresh to keep it.
"""
from __future__ import annotations

import copy
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

import streamlit as st

from cnn.data.datasets import SAMPLE
from cnn.model.spec import ModelSpec

# ---------------------------------------------------------------------------
# Keys: every page reads and writes session state through these names only
# ---------------------------------------------------------------------------

TAB = "tab"  # this browser tab's Tab
SESSION_ID = "session_id"  # this tab's id, mirrored in the URL as ?sid=
FLASH = "flash"  # messages for the next page drawn: [(kind, text)]
PREDICT_INPUT = "predict_input"  # the last image Predict turned into a model input: {x, model, label}
ACTIVATED = "activated"  # the finished job whose model was last made active (so it happens once)
GOTO = "goto"  # a page asked for before st.navigation ever ran (see chrome.page_setup)
SIDEBAR_MODEL = "sidebar_model"  # the sidebar's active-model picker
# Widget keys a page reads or sets outside its own widgets
MODELS_PICK = "models_pick"  # the model shown on Models
MODELS_UPLOADED = "models_uploaded"  # file id of the last model upload handled on Models
SPEC_IMPORTED = "cfg_imported"  # file id of the last spec upload handled on Configure
ZIP_HANDLED = "cfg_zip_handled"  # Configure: file id of the last class-folder .zip handled
ZIP_PROBLEM = "cfg_zip_problem"  # Configure: (file id, why that .zip was refused)
LAYER_IDS = "cfg_layer_ids"  # Configure: one stable id per layer, so widget keys follow a layer when it moves
TRAIN_NAME = "train_name"  # Train's "Save as" box
TRAIN_FILM_OPEN = "train_film_open"  # Train: the film's expander (drawn only while open)
PREDICT_RAW_OPEN = "predict_raw_open"  # Predict: the calibrated-vs-raw softmax chart (drawn only while open)
PREDICT_INSPECTOR_OPEN = "predict_inspector_open"  # Predict: the preprocessing inspector (its images drawn only while open)
TRAIN_FILM_FRAME = "train_film_frame"  # Train: the film's frame slider (+ "_seen": frames when last drawn)
LEARNED_VIEW = "learned_view"  # What it learned: the open tab (only it is computed)
LEARNED_MAP_METHOD = "learned_map_method"  # What it learned: PCA or t-SNE
LEARNED_MAP_PICK = "learned_map_pick"  # What it learned: the map's clicked point → test image shown
MODELS_TABS = "models_tabs"  # Models: the open tab
PREDICT_SOURCE = "predict_source"  # Predict: Draw, Upload, Camera or Sample
PREDICT_CAMERA = "predict_camera"  # Predict: the camera widget


@dataclass
class Tab:
    """What one browser tab is working on; a refresh keeps it."""

    dataset: str = SAMPLE  # dataset name, or a class-folder path chosen on Configure
    spec: ModelSpec | None = None  # the spec being edited on Configure (set by chrome on first use)
    active_model: str | None = None  # the registry model Predict, Evaluate and Learn use
    extra: dict = field(default_factory=dict)  # page-owned values that a refresh keeps too


MAX_TABS = 1000  # remembered tabs (a few KB each); the least recently used are forgotten first


@st.cache_resource
def _tabs() -> OrderedDict:
    """(workspace id, session id) → Tab, shared across refreshes (not across server restarts)."""
    return OrderedDict()


def session_id() -> str:
    """This tab's id: from the URL after a refresh, else new (128 random bits); always written back to the
    URL so that a refresh finds it."""
    sid = st.session_state.get(SESSION_ID) or st.query_params.get("sid") or secrets.token_hex(16)
    st.session_state[SESSION_ID] = sid
    if st.query_params.get("sid") != sid:
        st.query_params["sid"] = sid
    return sid


def tab() -> Tab:
    """This browser tab's Tab. A new session whose URL names a remembered tab of the same workspace (a refresh)
    continues with a copy of it — a copy, so that a duplicated browser tab does not edit the same spec. The
    memory is keyed by workspace and tab: a tab id from someone else's link finds nothing."""
    from app import workspaces

    key = (workspaces.current().id, session_id())
    if TAB not in st.session_state:
        kept = _tabs().get(key)
        st.session_state[TAB] = copy.deepcopy(kept) if kept is not None else Tab()
    memory = _tabs()
    memory[key] = st.session_state[TAB]
    memory.move_to_end(key)  # least recently used first
    while len(memory) > MAX_TABS:
        memory.popitem(last=False)
    return st.session_state[TAB]


def flash(text: str, kind: str = "info") -> None:
    """Say `text` at the top of the next page drawn (kind: 'success', 'info', 'warning' or 'error')."""
    st.session_state.setdefault(FLASH, []).append((kind, text))


def take_flashes() -> list[tuple[str, str]]:
    """The pending flash messages, removed."""
    return st.session_state.pop(FLASH, [])


class Kept:
    """A page's widget values that outlive their widgets. Streamlit forgets a widget's value as soon as a run does
    not draw it (a chapter of Learn that is not shown, another page); a widget drawn through `widget` gets the
    value it last had back when it is drawn again, and the rest of the page can read it meanwhile (`get`). The
    values live in the Tab (a refresh keeps them) and are forgotten when `owner` changes (e.g. another model:
    other filters, other classes)."""

    def __init__(self, name: str, owner=None):
        box = tab().extra.get(name)
        if not isinstance(box, dict) or box.get("owner") != owner:
            box = tab().extra[name] = {"owner": owner, "values": {}}
        self.values = box["values"]

    def widget(self, draw, *args, key: str, valid=None, **kwargs):
        """draw(*args, key=key, **kwargs) — st.slider, st.selectbox, … — starting from the value it had when last
        drawn, if `valid` (when given) still accepts it: a range that depends on other settings may have changed."""
        if key not in st.session_state and key in self.values and (valid is None or valid(self.values[key])):
            st.session_state[key] = self.values[key]
        value = draw(*args, key=key, **kwargs)
        self.values[key] = st.session_state[key] if key in st.session_state else value
        return value

    def get(self, key: str, default=None):
        """Widget `key`'s value now, or as it was when last drawn, or `default`."""
        return st.session_state[key] if key in st.session_state else self.values.get(key, default)

    def put(self, key: str, value) -> None:
        """Keep a value that is not a widget's (e.g. a table's edited result)."""
        self.values[key] = value

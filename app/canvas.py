"""The drawing canvas of Predict: white ink on black, drawn with a mouse, a pen or a finger, sent the moment a
stroke ends.

Why our own: streamlit-drawable-canvas waits 200 ms after every stroke before it sends the picture (a constant in
its frontend), two thirds of the time from mouse-up to the prediction. This one sends on pointer-up: the
picture as a PNG data URL (a few kB) and the strokes themselves (so the drawing can be put back when Predict's
Draw input is opened again). Undo and Clear sit under it.
"""
from __future__ import annotations

import base64

import numpy as np
import streamlit as st

_CSS = """
.cnn-canvas { display: inline-flex; flex-direction: column; gap: 0.4rem; }
.cnn-canvas canvas { touch-action: none; border-radius: 0.5rem; cursor: crosshair; max-width: 100%;
  background: #000; }
.cnn-canvas .bar { display: flex; gap: 0.5rem; }
.cnn-canvas button { font: inherit; font-size: 0.875rem; padding: 0.25rem 0.75rem; border-radius: 0.5rem;
  border: 1px solid rgba(49, 51, 63, 0.2); background: #fff; color: rgb(49, 51, 63); cursor: pointer; }
.cnn-canvas button:hover { border-color: #ff4b4b; color: #ff4b4b; }
.cnn-canvas button:disabled { opacity: 0.4; cursor: default; }
"""

_JS = """
export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let s = parentElement.__cnnCanvas;
  if (!s) {
    const root = document.createElement("div");
    root.className = "cnn-canvas";
    const canvas = document.createElement("canvas");
    canvas.width = data.size; canvas.height = data.size;
    canvas.setAttribute("aria-label", "Drawing canvas: draw one digit");
    const bar = document.createElement("div");
    bar.className = "bar";
    const undo = document.createElement("button");
    undo.type = "button"; undo.textContent = "Undo";
    const clear = document.createElement("button");
    clear.type = "button"; clear.textContent = "Clear";
    bar.append(undo, clear);
    root.append(canvas, bar);
    parentElement.append(root);
    const ctx = canvas.getContext("2d");
    s = { canvas, ctx, undo, clear, strokes: (data.strokes || []).map(t => ({ w: t.w, p: t.p.slice() })),
          current: null, width: data.width };
    parentElement.__cnnCanvas = s;

    const line = (t) => {
      ctx.strokeStyle = "#fff"; ctx.fillStyle = "#fff"; ctx.lineWidth = t.w;
      ctx.lineCap = "round"; ctx.lineJoin = "round";
      if (t.p.length === 1) {  // a tap: a dot
        ctx.beginPath(); ctx.arc(t.p[0][0], t.p[0][1], t.w / 2, 0, 2 * Math.PI); ctx.fill(); return;
      }
      ctx.beginPath(); ctx.moveTo(t.p[0][0], t.p[0][1]);
      for (let i = 1; i < t.p.length; i++) ctx.lineTo(t.p[i][0], t.p[i][1]);
      ctx.stroke();
    };
    const redraw = () => {
      ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
      s.strokes.forEach(line);
      undo.disabled = clear.disabled = s.strokes.length === 0;
    };
    const send = () => setStateValue("drawing", {
      strokes: s.strokes, data: s.strokes.length ? canvas.toDataURL("image/png") : null });
    const at = (e) => {
      const r = canvas.getBoundingClientRect();
      return [Math.round((e.clientX - r.left) * canvas.width / r.width * 10) / 10,
              Math.round((e.clientY - r.top) * canvas.height / r.height * 10) / 10];
    };
    canvas.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 && e.pointerType === "mouse") return;
      canvas.setPointerCapture(e.pointerId);
      s.current = { w: s.width, p: [at(e)] };
      line(s.current);
      e.preventDefault();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!s.current) return;
      const p = at(e), last = s.current.p[s.current.p.length - 1];
      if (p[0] === last[0] && p[1] === last[1]) return;
      s.current.p.push(p);
      ctx.strokeStyle = "#fff"; ctx.lineWidth = s.current.w; ctx.lineCap = "round";
      ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
    });
    const end = () => {
      if (!s.current) return;
      s.strokes.push(s.current); s.current = null;
      redraw(); send();
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    undo.addEventListener("click", () => { s.strokes.pop(); redraw(); send(); });
    clear.addEventListener("click", () => { s.strokes = []; redraw(); send(); });
    redraw();
  }
  s.width = data.width;
}
"""

_component = st.components.v2.component("cnn_studio.canvas", html="", css=_CSS, js=_JS, isolate_styles=True)


MAX_DATA_URL = 4 * 2 ** 20  # a 280×280 drawing is a few kB; anything far larger did not come from this canvas
MAX_POINTS = 20_000  # strokes kept to put the drawing back; a long scribble has a few hundred points


def decode_png(data_url, side: int) -> np.ndarray | None:
    """A canvas's `data:image/png;base64,…` as a (side, side, 4) uint8 array, or None when it is missing or not
    what this canvas sends (the browser is a client like any other: checked, never trusted)."""
    from cnn.errors import ImageError
    from cnn.imageio import load_image

    if not isinstance(data_url, str) or len(data_url) > MAX_DATA_URL or not data_url.startswith(
            "data:image/png;base64,"):
        return None
    try:
        image, _ = load_image(base64.b64decode(data_url.split(",", 1)[1], validate=True),
                              max_pixels=side * side)
    except (ImageError, ValueError):
        return None
    pixels = np.asarray(image.convert("RGBA"))
    return pixels if pixels.shape == (side, side, 4) else None


def clean_strokes(strokes) -> list:
    """The strokes as this canvas draws them — [{"w": width, "p": [[x, y], …]}, …] — or [] for anything else."""
    if not isinstance(strokes, list):
        return []
    kept, points = [], 0
    for stroke in strokes:
        if not isinstance(stroke, dict) or not isinstance(stroke.get("p"), list):
            return []
        width, path = stroke.get("w"), stroke["p"]
        if not isinstance(width, (int, float)) or not 1 <= width <= 100:
            return []
        if not all(isinstance(q, list) and len(q) == 2 and all(isinstance(v, (int, float)) for v in q)
                   for q in path):
            return []
        points += len(path)
        if points > MAX_POINTS:
            return []
        kept.append({"w": float(width), "p": [[float(x), float(y)] for x, y in path]})
    return kept


def draw_canvas(key: str, stroke_width: int, size: int = 280, strokes: list | None = None):
    """The canvas (starting from `strokes` when it is first shown); returns (strokes, RGBA array) of what is
    on it now, or (None, None) before anything has been sent from it."""
    result = _component(data={"size": size, "width": int(stroke_width), "strokes": strokes or []}, key=key,
                        default={"drawing": None}, on_drawing_change=lambda: None, width="content",
                        height="content")
    drawing = result.get("drawing") if result is not None else None
    if not isinstance(drawing, dict):
        return None, None
    return clean_strokes(drawing.get("strokes")), decode_png(drawing.get("data"), size)

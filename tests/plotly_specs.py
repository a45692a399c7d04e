"""Reading the Plotly figures an AppTest page sent: by widget key, with plotly's typed arrays decoded."""
import base64
import io
import json

import numpy as np


def chart_ids(at) -> list[str]:
    """The keys of the page's plotly charts, in page order."""
    return [c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")]


def chart(at, key: str) -> dict:
    """The figure spec of the chart with widget key `key` (exactly one)."""
    found = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert len(found) == 1, f"{key!r} not among {chart_ids(at)}"
    return found[0]


def array(value) -> np.ndarray:
    """A figure's data array as sent: a list, or plotly's typed array {dtype, bdata, shape}."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.asarray(value)


def annotations(figure: dict) -> str:
    return " ".join(a.get("text", "") for a in figure["layout"].get("annotations", []))


def png(figure: dict) -> np.ndarray:
    """The pixels of the one PNG an image-grid figure sends."""
    from PIL import Image

    source = next(t for t in figure["data"] if t["type"] == "image")["source"]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))))

"""In real Chromium, "What it learned" on the default model: a click on a filter shows its row's real patches,
and a click on a point of the test-set map shows that test image with its label and prediction."""
import re

from playwright.sync_api import expect

from tests.chromium import go, open_tab, wait_idle

# Where a point of a Plotly chart is on the screen: the chart's own axes (l2p) from its drawn data.
POINT_JS = """
([titlePart, symbol]) => {
  const charts = [...document.querySelectorAll('.js-plotly-plot')];
  const gd = charts.find(g => JSON.stringify((g.layout.xaxis || {}).title || '').includes(titlePart));
  if (!gd || !gd._fullLayout) return null;
  gd.scrollIntoView({block: 'center'});
  const size = gd._fullLayout._size, xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const box = gd.getBoundingClientRect();
  const at = (x, y) => [box.left + size.l + xa.l2p(x), box.top + size.t + ya.l2p(y)];
  const all = [];
  gd._fullData.forEach(t => { for (let i = 0; i < t.x.length; i++) all.push(at(t.x[i], t.y[i])); });
  // A point of the wanted kind with no other point within 8 px: the click lands on it alone.
  for (const t of gd._fullData.filter(t => t.marker.symbol === symbol)) {
    for (let i = 0; i < t.x.length; i++) {
      const [px, py] = at(t.x[i], t.y[i]);
      const crowded = all.filter(([qx, qy]) => Math.hypot(qx - px, qy - py) < 8).length > 1;
      if (!crowded) return {x: px, y: py, index: Number(t.customdata[i][0]), label: Number(t.customdata[i][1])};
    }
  }
  return null;
}
"""

# The centre of tile `n` of a filters grid (its invisible hover marker), by the grid's title.
TILE_JS = """
([titlePart, n]) => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')]
    .find(g => JSON.stringify(g.layout.title || '').includes(titlePart));
  if (!gd || !gd._fullLayout) return null;
  gd.scrollIntoView({block: 'center'});
  const size = gd._fullLayout._size, xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const box = gd.getBoundingClientRect();
  const t = gd._fullData.find(t => t.type === 'scatter');
  return {x: box.left + size.l + xa.l2p(t.x[n]), y: box.top + size.t + ya.l2p(t.y[n])};
}
"""


def locate(page, script: str, args: list) -> dict | None:
    """The script's answer once the chart it looks for has been drawn (Plotly draws after the text around it),
    or None if it is drawn and the script still finds nothing."""
    try:
        return page.wait_for_function(script, arg=args, timeout=30_000).json_value()
    except Exception:  # noqa: BLE001 — playwright's TimeoutError: asserted by the caller
        return None


def test_a_click_on_a_filter_and_on_a_point_of_the_map(page, app_server):
    go(page, app_server, "learned")
    page.get_by_text("conv2 · conv layer 2 of 2").wait_for(timeout=120_000)
    page.get_by_text("Each of its values sees 14×14 px of the image (25% of it).").wait_for()
    wait_idle(page, 120_000)

    # Filter 21 of conv2 sits in the third row of its grid: clicking it shows filters 16–23's patches.
    tile = locate(page, TILE_JS, ["32 filters looks for", 21])
    assert tile is not None, "the grid of conv2's filters was not drawn"
    page.mouse.click(tile["x"], tile["y"])
    wait_idle(page)
    picker = page.locator('[data-testid="stButtonGroup"]').filter(has_text="24–31")
    expect(picker.get_by_role("radio", name="16–23", exact=True)).to_be_checked()
    page.get_by_text(re.compile("Real test patches that excite filters 16–23 most")).wait_for()

    # The map: a click on a misclassified point (✕) shows that very test image, its label and prediction.
    open_tab(page, "The test set as it sees it")
    page.get_by_text("Click a point to see its test image").wait_for(timeout=120_000)
    point = locate(page, POINT_JS, ["principal axis", "x"])
    assert point is not None, "no misclassified point stands alone on the map"
    page.mouse.click(point["x"], point["y"])
    wait_idle(page)
    page.get_by_text(f"test image {point['index']}", exact=True).wait_for()
    verdict = page.get_by_text(re.compile(r"^True label"))
    expect(verdict).to_contain_text(f"True label {point['label']}")
    expect(verdict).to_contain_text("wrong")
    assert page.locator('[data-testid="stImage"] img').count() == 1

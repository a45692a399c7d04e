"""In real Chromium, every control of Learn, in the order a person meets them, on the default model's own test
image; the gradient step lowers the loss at its defaults and names an overshoot when the rate is too big."""
import re

from tests.chromium import (choose, combobox, go, metric, nudge_slider, open_options, radio_group, select,
                           set_number, wait_idle)


def number(text: str) -> float:
    return float(re.sub(r"[^0-9.\-−]", "", text).replace("−", "-"))


MAIN_SCROLL = """() => document.querySelector('[data-testid="stMain"]').scrollTop"""


def next_chapter(page, title: str) -> float:
    """Click Next (at the bottom of a chapter): chapter `title` opens, scrolled to its start. Returns how far the
    page was scrolled down to reach the button."""
    button = page.get_by_role("button", name=title, exact=True)
    button.scroll_into_view_if_needed()
    scrolled = page.evaluate(MAIN_SCROLL)
    button.click()
    wait_idle(page)
    page.get_by_role("heading", name=title, exact=True).wait_for()
    page.wait_for_function(MAIN_SCROLL + " === 0", timeout=5_000)  # back at the top, where the chapter starts
    return scrolled


def test_every_control_of_learn(page, app_server):
    """A person reads Learn from the first chapter with Next, tries every control on the way, then goes back."""
    go(page, app_server, "learn")
    page.get_by_role("heading", name="1 · Pixels and channels").wait_for(timeout=60_000)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 1  # one chapter at a time
    assert next_chapter(page, "2 · Convolution") > 100  # Next is below the pixels; chapter 2 starts at the top

    # 2 · Convolution: kernel, stride, padding, the model's filters, a custom kernel, the output position.
    page.get_by_text("NumPy and Keras agree").first.wait_for()
    select(page, "Kernel", "vertical edges")
    select(page, "Stride", "2")
    page.get_by_text("height ⌊(28−3+0)/2⌋+1 = 13").first.wait_for()
    choose(page, "same", radio_group(page, "Padding"))
    page.get_by_text("height ⌊(28−3+1)/2⌋+1 = 14").first.wait_for()
    nudge_slider(page, "Output row", 3)
    nudge_slider(page, "Output column", 2, "ArrowLeft")
    select(page, "Kernel", "custom")
    choose(page, "5", radio_group(page, "Size"))
    select(page, "Kernel", "model filter")
    select(page, "Stride", "1")
    choose(page, "valid", radio_group(page, "Padding"))
    nudge_slider(page, "conv1 filter", 2)
    page.get_by_text("conv1, filter 2, after relu: NumPy and Keras agree").wait_for()
    next_chapter(page, "3 · ReLU")
    # ReLU goes on from the convolution just set.
    page.get_by_text("filter 2 of conv1, stride 1, padding 'valid'").wait_for()
    page.get_by_text(re.compile(r"values zeroed")).wait_for()

    # 4 · Pooling: mode, size, stride, padding, position.
    next_chapter(page, "4 · Pooling")
    choose(page, "avg", radio_group(page, "Pooling"))
    select(page, "Pool size", "3")
    choose(page, "same", radio_group(page, "Padding"))
    nudge_slider(page, "Pooled row", 1)

    # 5 · Dense unit; 6 · certainty; 7 · Dropout rate and seed.
    next_chapter(page, "5 · Flatten, dense, softmax")
    nudge_slider(page, "dense1 unit", 5)
    page.get_by_text("dense1 unit 5: NumPy and Keras agree").wait_for()
    page.get_by_text("softmax probabilities: NumPy and Keras agree").wait_for()
    next_chapter(page, "6 · Why “99.9%” is not certainty")
    page.get_by_text(re.compile(r"always add up to 1")).wait_for()
    next_chapter(page, "7 · Dropout")
    nudge_slider(page, "Dropout rate", 2)
    page.get_by_text("rate 60%").first.wait_for()
    set_number(page, "Random seed", 7)
    page.get_by_text(re.compile(r"over 1,000 random masks the sum averages")).wait_for()

    # 8 · One gradient step: at the defaults the loss falls and nothing else breaks.
    next_chapter(page, "8 · Learning: one gradient-descent step")
    before, after = number(metric(page, "loss before")), number(metric(page, "loss after"))
    assert after < before
    assert page.get_by_text("The loss went up").count() == 0
    page.get_by_text(re.compile(r"Size of the step: ‖lr·gradient‖ = ")).wait_for()
    page.get_by_text(re.compile(r"in conv1 filter 2 the largest single change")).wait_for()  # chapter 2's filter
    # The biggest rate overshoots on this image (a confident model, a far-away label): the page says so.
    nudge_slider(page, "Learning rate", 9)
    if number(metric(page, "loss after")) > before:
        page.get_by_text("The loss went up").wait_for()
    # Another label: its own suggested rate, and the loss falls again.
    label_box = combobox(page, "Teach it that this image is")
    current = label_box.input_value()
    open_options(page, "Teach it that this image is")
    other = next(o.strip() for o in page.get_by_role("option").all_inner_texts() if o.strip() != current)
    page.get_by_role("option", name=other, exact=True).click()
    wait_idle(page)
    assert label_box.input_value() == other
    assert number(metric(page, "loss after")) < number(metric(page, "loss before"))

    # 9 · The hierarchy, the last chapter: no Next. Back to chapter 2 with the picker: everything as it was left.
    next_chapter(page, "9 · The hierarchy")
    page.get_by_text("Edges → parts → objects, measured on this model").wait_for(timeout=120_000)
    # Previous comes under the chapter, drawn once the chapter's own figures are done: wait for it, then count.
    previous = page.get_by_role("button", name=re.compile("^8 · Learning"))
    previous.wait_for(timeout=120_000)
    wait_idle(page)
    assert previous.count() == 1
    choose(page, "2 Convolution")
    page.get_by_role("heading", name="2 · Convolution", exact=True).wait_for()
    assert combobox(page, "Kernel").input_value() == "model filter"
    page.get_by_text("conv1, filter 2, after relu: NumPy and Keras agree").wait_for()

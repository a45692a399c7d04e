"""In real Chromium, every control of Learn, in the order a person meets them, on the default model's own test
image; the gradient step lowers the loss at its defaults and names an overshoot when the rate is too big."""
import re

from tests.browser import (choose, combobox, go, metric, nudge_slider, open_options, radio_group, select,
                           set_number, wait_idle)


def number(text: str) -> float:
    return float(re.sub(r"[^0-9.\-−]", "", text).replace("−", "-"))


def test_every_control_of_learn(page, app_server):
    go(page, app_server, "learn")
    page.get_by_text("1 · Pixels and channels").wait_for(timeout=60_000)
    page.get_by_text("NumPy and Keras agree").first.wait_for()

    # 2 · Convolution: kernel, stride, padding, the model's filters, a custom kernel, the output position.
    select(page, "Kernel", "vertical edges")
    select(page, "Stride", "2")
    page.get_by_text("height ⌊(28−3+0)/2⌋+1 = 13").first.wait_for()
    choose(page, "same", radio_group(page, "Padding").first)
    page.get_by_text("height ⌊(28−3+1)/2⌋+1 = 14").first.wait_for()
    nudge_slider(page, "Output row", 3)
    nudge_slider(page, "Output column", 2, "ArrowLeft")
    select(page, "Kernel", "custom")
    choose(page, "5", radio_group(page, "Size"))
    select(page, "Kernel", "model filter")
    select(page, "Stride", "1")
    choose(page, "valid", radio_group(page, "Padding").first)
    nudge_slider(page, "conv1 filter", 2)
    page.get_by_text("conv1, filter 2, after relu: NumPy and Keras agree").wait_for()

    # 4 · Pooling: mode, size, stride, padding, position.
    choose(page, "avg", radio_group(page, "Pooling"))
    select(page, "Pool size", "3")
    choose(page, "same", radio_group(page, "Padding").last)
    nudge_slider(page, "Pooled row", 1)

    # 5 · Dense unit; 6 · Dropout rate and seed.
    nudge_slider(page, "dense1 unit", 5)
    page.get_by_text("dense1 unit 5: NumPy and Keras agree").wait_for()
    page.get_by_text("softmax probabilities: NumPy and Keras agree").wait_for()
    nudge_slider(page, "Dropout rate", 2)
    page.get_by_text("rate 60%").first.wait_for()
    set_number(page, "Random seed", 7)
    page.get_by_text(re.compile(r"over 1,000 random masks the sum averages")).wait_for()

    # 7 · One gradient step: at the defaults the loss falls and nothing else breaks.
    before, after = number(metric(page, "loss before")), number(metric(page, "loss after"))
    assert after < before
    assert page.get_by_text("The loss went up").count() == 0
    page.get_by_text(re.compile(r"Size of the step: ‖lr·gradient‖ = ")).wait_for()
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

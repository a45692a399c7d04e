"""Learn: how a CNN works, computed live on the user's own image with the active model's weights.

Every number here comes from cnn.lessons (plain NumPy) or the model itself, and where both exist the page
shows that they agree.
"""
import numpy as np
import pandas as pd
import streamlit as st

from cnn import lessons, state
from cnn.figures import architecture_diagram, channels_row, maps_row, rate_trials, values_heatmap, vector_bars
from cnn.inference import LEARNING_RATES, activations, conv_layers, inner_layers, runner_up
from cnn.text import probability_text
from cnn.spec import ModelSpec, SpecError, output_size_formula, preset, validate

state.page_setup()


def source_image(info):
    """(image uint8 H×W×C, where it came from, true label or None)."""
    got = st.session_state.get(state.PREDICT_INPUT)
    if got is not None and tuple(got["x"].shape) == tuple(info.input_shape):
        return got["x"], "your image from **Predict**", got.get("label")
    data = state.model_dataset(info)
    return data.x_test[0], (f"test image #0 of {state.dataset_title(data.name)} (draw on **Predict** to use your "
                            "own)"), int(data.y_test[0])


def position_ui(shape, label: str, key: str) -> tuple[int, int]:
    """A (row, column) in a map of `shape`: a slider per axis, 0 when the axis is one cell long."""
    cols = st.columns(2)
    return tuple(col.slider(f"{label} {axis}", 0, n - 1, n // 2, key=f"{key}_{axis[:3]}") if n > 1 else 0
                 for col, n, axis in zip(cols, shape, ("row", "column")))


def agree(label: str, ours, theirs) -> None:
    diff = float(np.max(np.abs(np.asarray(ours, float) - np.asarray(theirs, float))))
    if diff <= 1e-5:
        st.success(f"{label}: NumPy and Keras agree, max |difference| = {diff:.1e}")
    else:
        st.error(f"{label}: NumPy and Keras DISAGREE, max |difference| = {diff:.1e}")


st.title("Learn")
info, model = state.require_active_model()
try:
    x, origin, true_label = source_image(info)
except Exception as exc:  # noqa: BLE001 — no dataset: the page cannot pick a sample
    st.info(f"Draw something on **Predict** first ({exc}).")
    st.stop()
acts = activations(model, x)
layers = inner_layers(model)
H, W, C = x.shape
ink = lessons.ink_pixels(x)
st.caption(f"Following {origin} through **{info.name}**.")

# 1 ---------------------------------------------------------------------------------------------------------
st.header("1 · Pixels and channels")
st.markdown(f"To the network an image is a grid of numbers: **{H} × {W} pixels × {C} channel{'s' if C > 1 else ''}**, "
            f"each 0 (black) … 255 (white). This one has **{ink} ink pixels** (pixels where a channel is above 0); "
            f"min {int(x.min())}, max {int(x.max())}, mean {x.mean():.1f}. Zoom in to read the values.")
if C == 1:
    st.plotly_chart(values_heatmap(x[..., 0], kind="pixels", fmt=".0f", height=560), width="stretch",
                    key="learn_pixels")
    st.caption("Grayscale = one channel. The model divides every value by 255 first (its Rescaling layer).")
else:
    st.plotly_chart(channels_row(x), width="stretch", key="learn_pixels")
    st.caption("Colour = three channels, each its own grid of 0 … 255, drawn here on one scale in its own "
               "colour: a red object is bright in the red panel and dark in the others. A conv kernel has one "
               "slice per channel.")

# 2 ---------------------------------------------------------------------------------------------------------
st.header("2 · Convolution")
first = conv_layers(model)[0] if conv_layers(model) else None
image = x.astype(np.float64) / 255  # what the first layer sees after rescaling
gray = image.mean(axis=-1)
options = [*lessons.KERNELS, "custom"] + (["model filter"] if first else [])
cols = st.columns(4)
choice = cols[0].selectbox("Kernel", options, index=len(options) - 1 if first else 0, key="learn_kernel")
stride = cols[1].selectbox("Stride", [1, 2, 3], key="learn_stride")
padding = cols[2].radio("Padding", ["valid", "same"], horizontal=True, key="learn_padding")
bias, activation, channel_kernel = 0.0, None, None
if choice == "custom":
    size = cols[3].radio("Size", [3, 5], horizontal=True, key="learn_custom_size")
    start = np.zeros((size, size))
    start[size // 2, size // 2] = 1.0  # identity: edit it
    edited = st.data_editor(pd.DataFrame(start, columns=[str(i) for i in range(size)]), key=f"learn_custom_{size}",
                            width="content")
    kernel = np.nan_to_num(edited.to_numpy(dtype=float))
elif choice == "model filter":
    weights, biases = model.get_layer(first).get_weights()  # (K, K, Cin, F), (F,)
    f = cols[3].slider(f"{first} filter", 0, weights.shape[-1] - 1, 0, key="learn_filter")
    channel_kernel, bias = weights[..., f], float(biases[f])
    activation = getattr(model.get_layer(first).activation, "__name__", "linear")
    kernel = channel_kernel.sum(axis=-1) if C > 1 else channel_kernel[..., 0]
else:
    kernel = lessons.KERNELS[choice]
K = kernel.shape[0]
try:
    if channel_kernel is not None:
        feature = lessons.conv2d(image if C > 1 else gray, channel_kernel[..., None] if C > 1 else kernel,
                                 stride=stride, padding=padding)
        feature = (feature[..., 0] if C > 1 else feature) + bias
    else:
        feature = lessons.conv2d(gray, kernel, stride=stride, padding=padding)
except ValueError as exc:
    st.error(str(exc))
    st.stop()
Ho, Wo = feature.shape
row, col = position_ui(feature.shape, "Output", "learn")
if C > 1 and channel_kernel is not None:
    parts = [lessons.conv_at(image[..., c], channel_kernel[..., c], row, col, stride, padding) for c in range(C)]
    at = {**parts[0], "value": sum(p["value"] for p in parts)}
    st.caption("Colour: the kernel has one K×K slice per channel; shown for the red channel, the value sums all three.")
else:
    at = lessons.conv_at(gray, kernel, row, col, stride, padding)
left, right = st.columns(2)
left.plotly_chart(values_heatmap(image[..., 0] if C == 1 else gray, "input ÷ 255, the patch outlined",
                                 (at["top"], at["left"], K, K), kind="pixels", pixel_max=1, show_text=False,
                                 height=360), width="stretch",
                  key="learn_conv_input")
right.plotly_chart(values_heatmap(feature, f"feature map {Ho}×{Wo}, output ({row}, {col}) outlined",
                                  (row, col, 1, 1), kind="signed", legend="value", show_text=False, height=360),
                   width="stretch", key="learn_conv_output")
cols = st.columns(3)
cols[0].plotly_chart(values_heatmap(at["patch"], "patch", kind="pixels", pixel_max=1, height=230), width="stretch",
                     key="learn_patch")
cols[1].plotly_chart(values_heatmap(kernel if C == 1 or channel_kernel is None else channel_kernel[..., 0],
                                    "kernel", kind="signed", height=230), width="stretch",
                     key="learn_kernel_fig")
cols[2].plotly_chart(values_heatmap(at["products"], "patch ⊙ kernel", kind="signed", height=230),
                     width="stretch", key="learn_products")
bias_text = f" + bias {bias:.4f} = **{at['value'] + bias:.4f}**" if channel_kernel is not None else ""
st.markdown(f"Sum of the {K * K} products = **{at['value']:.4f}**{bias_text} — the value at output "
            f"({row}, {col}).")
st.markdown(f"Output size ⌊(W − K + 2P)/S⌋ + 1 with your numbers: height {output_size_formula(H, K, stride, padding)}, "
            f"width {output_size_formula(W, K, stride, padding)}.")
st.markdown("**Many filters, many features**: each kernel finds something different in the same image. "
            "Signed maps use the diverging scale (blue negative, white 0, red positive); maps that cannot go "
            "below 0 (the blur) use the sequential one.")
st.plotly_chart(maps_row({name: lessons.conv2d(gray, k, stride=stride, padding=padding)
                          for name, k in lessons.KERNELS.items()}),
                width="stretch", key="learn_many")
layer_conf = model.get_layer(first).get_config() if first else {}
same_setup = choice == "model filter" and stride == layer_conf.get("strides", (1,))[0] and \
    padding == layer_conf.get("padding")
if same_setup:
    ours = lessons.relu(feature) if activation == "relu" else feature
    if activation in ("relu", "linear"):
        agree(f"{first}, filter {f}, after {activation}", ours, acts[first][..., f])
elif choice == "model filter":
    st.caption(f"Set stride {layer_conf.get('strides', (1,))[0]} and padding '{layer_conf.get('padding')}' (the "
               f"layer's own) to compare with Keras's {first}.")

# 3 ---------------------------------------------------------------------------------------------------------
st.header("3 · ReLU")
after = lessons.relu(feature)
zeroed = lessons.relu_zeroed(feature)
st.plotly_chart(maps_row({"before ReLU (signed)": feature, "after ReLU = max(0, x) (never below 0)": after},
                         kind=["signed", "unsigned"], height=300), width="stretch", key="learn_relu")
st.markdown(f"ReLU keeps positive values and sets negatives to 0: **{zeroed} of {feature.size} values zeroed** "
            f"({zeroed / feature.size:.0%}).")

# 4 ---------------------------------------------------------------------------------------------------------
st.header("4 · Pooling")
cols = st.columns(4)
mode = cols[0].radio("Pooling", ["max", "avg"], horizontal=True, key="learn_pool_mode")
pool = cols[1].selectbox("Pool size", [2, 3], key="learn_pool")
pool_stride = cols[2].selectbox("Stride", [None, 1, 2, 3], key="learn_pool_stride",
                                format_func=lambda s: "= pool size" if s is None else str(s))
pool_padding = cols[3].radio("Padding", ["valid", "same"], horizontal=True, key="learn_pool_padding")
try:
    pooled = lessons.pool2d(after, pool, pool_stride, pool_padding, mode)
except ValueError as exc:
    st.error(str(exc))
    st.stop()
ph, pw = pooled.shape
prow, pcol = position_ui(pooled.shape, "Pooled", "learn_pool")
window = lessons.pool_at(after, prow, pcol, pool, pool_stride, pool_padding, mode)
left, mid, right = st.columns([2, 1, 2])
left.plotly_chart(values_heatmap(after, "ReLU map, the window outlined", (window["top"], window["left"], pool, pool),
                                 show_text=False, kind="unsigned", height=330), width="stretch",
                  key="learn_pool_input")
mid.plotly_chart(values_heatmap(window["window"], "window", kind="unsigned", height=200), width="stretch",
                 key="learn_window")
mid.markdown(f"{'max' if mode == 'max' else 'mean'} = **{window['value']:.4f}**")
right.plotly_chart(values_heatmap(pooled, f"pooled {ph}×{pw}", (prow, pcol, 1, 1), show_text=False,
                                  kind="unsigned", height=330), width="stretch", key="learn_pooled")
step = pool_stride or pool
fewer = 1 - pooled.size / after.size
st.markdown(f"{after.shape[0]}×{after.shape[1]} = {after.size} values → {ph}×{pw} = {pooled.size}: "
            f"**{fewer:.0%} fewer**. Shape arithmetic for this {after.shape[0]}×{after.shape[1]} map pooled "
            f"{pool}×{pool} with stride {step}: 'valid' {output_size_formula(after.shape[0], pool, step, 'valid')}, "
            f"'same' {output_size_formula(after.shape[0], pool, step, 'same')}.")

# 5 ---------------------------------------------------------------------------------------------------------
st.header("5 · Flatten, dense, softmax")
names = [l.name for l in layers]
# The layer that turns feature maps into one vector (Flatten, global pooling, ...): H×W×C in, a vector out.
flat_name = next((b for a, b in zip(names, names[1:]) if acts[a].ndim == 3 and acts[b].ndim == 1), None)
output = model.layers[-1]
if flat_name is None:
    st.info("This model has no Flatten/GlobalAveragePooling2D layer.")
else:
    before_flat = acts[names[names.index(flat_name) - 1]]
    vector = acts[flat_name]
    st.markdown(f"**{flat_name}** turns the last feature maps ({' × '.join(map(str, before_flat.shape))}) into one "
                f"vector of **{vector.size:,}** numbers.")
    dense = next((l for l in layers[names.index(flat_name) + 1:] if type(l).__name__ == "Dense"), output)
    dense_in = acts[names[names.index(dense.name) - 1]]
    dw, db = dense.get_weights()
    unit = st.slider(f"{dense.name} unit", 0, dw.shape[1] - 1, 0, key="learn_unit")
    d = lessons.dense_unit(dense_in, dw, db, unit)
    top = np.argsort(-np.abs(d["products"]))[:20]
    st.plotly_chart(vector_bars(d["products"][top], f"the 20 largest input × weight products for unit {unit}",
                                labels=[str(i) for i in top]), width="stretch", key="learn_dense")
    act_name = getattr(dense.activation, "__name__", "linear")
    st.markdown(f"Unit {unit}: Σ inputᵢ·weightᵢ over {dense_in.size:,} inputs = {d['weighted_sum']:.4f}, "
                f"+ bias {d['bias']:.4f} = **{d['value']:.4f}** before {act_name}.")
    if act_name == "relu":
        agree(f"{dense.name} unit {unit}", lessons.relu(d["value"]), acts[dense.name][unit])
    logits = lessons.dense(acts[names[-2]], *output.get_weights())
    probs = lessons.softmax(logits)
    table = pd.DataFrame({"class": [str(c) for c in info.class_names], "score (logit)": logits,
                          "e^score": np.exp(logits - logits.max()), "probability": [probability_text(p) for p in probs],
                          "share": probs})
    st.markdown("**Softmax** turns the output layer's scores into probabilities: e^score ÷ Σ e^score "
                f"(scores shifted by their max for stability). They sum to **{probs.sum():.6f}**.")
    st.dataframe(table, hide_index=True, width="stretch", key="learn_softmax",
                 column_config={"share": st.column_config.ProgressColumn(" ", format=" ", min_value=0, max_value=1)})
    agree("softmax probabilities", probs, acts[output.name])

# 6 ---------------------------------------------------------------------------------------------------------
st.header("6 · Dropout")
target = next((l.name for l in layers if type(l).__name__ == "Dense" and l.name != output.name), flat_name)
values = acts[target] if target else acts[names[-2]]
cols = st.columns(2)
rate = cols[0].slider("Dropout rate", 0.1, 0.9, 0.5, 0.05, key="learn_dropout_rate")
seed = cols[1].number_input("Random seed", 0, 10_000, 0, key="learn_dropout_seed")
dropped_out, mask = lessons.dropout(values, rate, seed=int(seed))
shown = min(64, values.size)
side = int(np.ceil(np.sqrt(shown)))  # the first `shown` values as a square grid, one cell per value


def as_grid(vector):
    return np.pad(vector[:shown].astype(float), (0, side * side - shown), constant_values=np.nan).reshape(side, side)


st.plotly_chart(maps_row({f"{target}: {shown} values before": as_grid(values), "after dropout": as_grid(dropped_out)},
                         height=260, shared=True), width="stretch", key="learn_dropout")
off = int((~mask).sum())
sums = lessons.dropout_sums(values, rate, seed=int(seed))
st.markdown(f"While training, dropout zeroes a random **{off} of {mask.size}** values ({off / mask.size:.0%}, rate "
            f"{rate:.0%}) and multiplies the rest by 1/(1−{rate:.2f}) = **{1 / (1 - rate):.2f}**. One mask moves the "
            f"sum: {values.sum():.2f} → **{dropped_out.sum():.2f}** here. The scaling makes it right *on average*: "
            f"over {len(sums):,} random masks the sum averages **{sums.mean():.2f}** (single masks range "
            f"{sums.min():.2f} … {sums.max():.2f}), so the next layer sees inputs of the same size in training and "
            "in prediction. At prediction time dropout does nothing: the output is the input.")

# 7 ---------------------------------------------------------------------------------------------------------
st.header("7 · Learning: one gradient-descent step")
if first is None:
    st.info("This model has no convolution layer to show.")
else:
    probs_now = acts[output.name]
    cols = st.columns(2)
    classes = list(range(len(info.class_names)))
    # Default: the runner-up class — a label the model finds plausible but does not predict, so there is a loss.
    label = cols[0].selectbox("Teach it that this image is", classes, index=runner_up(probs_now),
                              format_func=lambda i: f"{info.class_names[i]} (now {probability_text(probs_now[i])})",
                              key="learn_label")
    suggested = state.learning_step(info.name, info.mtime, x, label, None, first).learning_rate
    lr = cols[1].select_slider("Learning rate", list(LEARNING_RATES), value=suggested, key=f"learn_lr_{label}",
                               help="Suggested: the largest rate whose step lowers this image's loss without "
                                    "costing the other test images accuracy")
    step_result = state.learning_step(info.name, info.mtime, x, label, lr, first)
    f_idx = st.session_state.get("learn_filter", 0) if choice == "model filter" else 0
    cols = st.columns(4)
    cols[0].metric("loss before", f"{step_result.loss_before:.4f}")
    cols[1].metric("loss after", f"{step_result.loss_after:.4f}",
                   f"{step_result.loss_after - step_result.loss_before:+.4f}", delta_color="inverse")
    p_before, p_after = step_result.probabilities_before[label], step_result.probabilities_after[label]
    cols[2].metric(f"p({info.class_names[label]})", probability_text(p_after),
                   f"{(p_after - p_before) * 100:+.1f} points" if min(p_before, p_after) >= 0.001 else
                   f"×{p_after / max(p_before, 1e-30):.3g}",
                   help=f"before the step {p_before:.3g}, after it {p_after:.3g}")
    if step_result.others_before is not None:
        cols[3].metric("other test images right", f"{step_result.others_after:.1%}",
                       f"{(step_result.others_after - step_result.others_before) * 100:+.1f} points")
    if step_result.overshot:
        st.warning(f"**The loss went up** ({step_result.loss_before:.4f} → {step_result.loss_after:.4f}): the step "
                   f"overshot. The gradient only says which way is downhill *here*; a step of rate {lr:g} jumps so "
                   "far that it lands higher on the other side of the valley. Smaller rates lower the loss — the "
                   f"chart below shows which (suggested: {suggested:g}).")
    elif step_result.others_before is not None and step_result.others_after < step_result.others_before - 0.01:
        st.warning("This image's loss fell, but the model got **worse on other images**: a big step on one example "
                   "drags every weight towards it. That is why training takes small steps on batches of many images.")
    st.plotly_chart(rate_trials(step_result.trials, lr, step_result.loss_before, step_result.others_before),
                    width="stretch", key="learn_rates")
    st.plotly_chart(maps_row({f"{first} filter {f_idx} before": step_result.kernel_before[..., 0, f_idx],
                              "gradient ∂loss/∂w": step_result.gradient[..., 0, f_idx],
                              "change −lr·gradient": (step_result.kernel_after - step_result.kernel_before)[..., 0, f_idx],
                              "after: w − lr·gradient": step_result.kernel_after[..., 0, f_idx]}, kind="signed"),
                    width="stretch", key="learn_step")
    st.markdown(f"Size of the step: **‖lr·gradient‖ = {step_result.step_norm:.4g}** over all "
                f"{sum(int(np.prod(w.shape)) for w in model.trainable_weights):,} weights (their own size ‖w‖ = "
                f"{step_result.weight_norm:.4g}, so the step is {step_result.step_norm / step_result.weight_norm:.2%} "
                f"of it); in {first} filter {f_idx} the largest single change is "
                f"{np.abs(step_result.kernel_after - step_result.kernel_before)[..., 0, f_idx].max():.4g}.")
    st.caption(f"Cross-entropy loss = −log p(label) = −log {step_result.probabilities_before[label]:.4g}. The step "
               "moves every weight against its gradient (w ← w − lr·∂loss/∂w), which lowers the loss when the step "
               "is small enough. Done on a private copy — the active model is unchanged.")

# 8 ---------------------------------------------------------------------------------------------------------
st.header("8 · The hierarchy")
st.markdown("Early layers respond to edges and strokes; later ones to larger parts, at lower resolution.")
for name in conv_layers(model):
    maps = acts[name]
    st.plotly_chart(maps_row({f"{name} #{i}": maps[..., i] for i in range(min(6, maps.shape[-1]))}, height=190),
                    width="stretch", key=f"learn_hier_{name}")
    st.caption(f"{name}: {maps.shape[-1]} maps of {maps.shape[0]}×{maps.shape[1]}")
try:
    st.plotly_chart(architecture_diagram(validate(ModelSpec.from_dict(info.spec)).layers, f"{info.name}"),
                    width="stretch", key="learn_arch_model")
except SpecError:
    pass
lenet = validate(preset("lenet5"))
st.plotly_chart(architecture_diagram(lenet.layers, f"LeNet-5 (LeCun et al., 1998): {lenet.params:,} parameters"),
                width="stretch", key="learn_arch_lenet")

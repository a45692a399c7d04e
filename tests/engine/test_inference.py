"""Inference: probabilities, activations (one pass = each layer's own output), Grad-CAM, saliency, sweeps."""
import numpy as np
import pytest

from cnn.analysis.inference import activations, conv_kernels, conv_layers, default_cam_layer, explain, grad_cam, inner_layers, map_layers, predict_proba, robustness, saliency
from cnn.data.steps import transform_image


@pytest.fixture(scope="module")
def model(trained):
    return trained[0].model


@pytest.fixture(scope="module")
def digits(trained):
    return trained[2].x_test[:8]


def test_predict_proba_single_and_batch(model, digits):
    one, many = predict_proba(model, digits[0]), predict_proba(model, digits)
    assert one.shape == (10,) and many.shape == (8, 10)
    np.testing.assert_allclose(one, many[0], atol=1e-6)
    np.testing.assert_allclose(many.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(many, model.predict(digits.astype("float32"), verbose=0), atol=1e-5)


def test_wrong_input_shape_is_a_clear_error(model):
    from cnn.core.errors import ImageError

    with pytest.raises(ImageError, match="does not fit the model, which takes \\(28, 28, 1\\)"):
        predict_proba(model, np.zeros((32, 32, 3)))


def test_activations_equal_each_layers_own_output(model, digits):
    import keras

    got = activations(model, digits[3])
    names = [l.name for l in inner_layers(model)]
    assert list(got) == names and names[0] == "rescale" and names[-1] == "output"
    for name in names:
        alone = keras.Model(model.inputs[0], model.get_layer(name).output)
        expected = alone(digits[3:4].astype("float32"), training=False).numpy()[0]
        np.testing.assert_allclose(got[name], expected, atol=1e-5, err_msg=name)
    batch = activations(model, digits)
    assert batch["conv1"].shape == (8, 26, 26, 8)


def test_layer_lists(model):
    assert conv_layers(model) == ["conv1", "conv2"]
    assert map_layers(model) == ["conv1", "maxpool1", "conv2", "maxpool2"]
    assert default_cam_layer(model) == "conv2"
    assert conv_kernels(model).shape == (8, 3, 3, 1)


def test_explain_is_consistent_with_the_single_functions(model, digits):
    result = explain(model, digits[0])
    np.testing.assert_allclose(result.probabilities, predict_proba(model, digits[0]), atol=1e-5)
    assert result.class_index == int(result.probabilities.argmax()) and result.layer_name == "conv2"
    np.testing.assert_allclose(grad_cam(model, digits[0]), result.grad_cam, atol=1e-6)
    np.testing.assert_allclose(saliency(model, digits[0]), result.saliency, atol=1e-6)


@pytest.mark.parametrize("layer", ["conv1", "conv2", "maxpool1"])
def test_grad_cam_shape_and_range(model, digits, layer):
    for cls in (None, 0, 9):
        cam = grad_cam(model, digits[1], class_index=cls, layer_name=layer)
        assert cam.shape == (28, 28) and cam.min() >= 0 and cam.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="needs a layer with feature maps"):
        grad_cam(model, digits[1], layer_name="output")


def test_different_classes_give_different_explanations(model, digits):
    a, b = explain(model, digits[2], class_index=0), explain(model, digits[2], class_index=7)
    assert a.class_index == 0 and b.class_index == 7
    assert not np.allclose(a.saliency, b.saliency)


def test_saliency_range(model, digits):
    s = saliency(model, digits[4])
    assert s.shape == (28, 28) and s.max() == pytest.approx(1.0, abs=1e-5) and s.min() >= 0


def test_grad_cam_highlights_the_digit_on_the_default_model(default_model_dir):
    """On the committed model, Grad-CAM puts more weight on the ink than on the background."""
    import keras

    from cnn.data.load import load_dataset

    model = keras.saving.load_model(default_model_dir / "model.keras", safe_mode=True)
    data = load_dataset("mnist-sample", limit=(10, 50))
    ink_share = []
    for x in data.x_test:
        cam = grad_cam(model, x)
        ink = x[..., 0] > 64
        ink_share.append(cam[ink].mean() / max(cam[~ink].mean(), 1e-6))
    # Most digits: the mean heat on ink pixels beats the mean heat on background pixels.
    assert np.median(ink_share) > 1.5 and np.mean(np.array(ink_share) > 1) > 0.8


def test_robustness_sweeps(model, digits):
    values, probs = robustness(model, digits[0], "rotate")
    assert values[0] == -45 and values[-1] == 45 and probs.shape == (len(values), 10)
    zero = list(values).index(0)
    np.testing.assert_allclose(probs[zero], predict_proba(model, digits[0]), atol=1e-5)
    for kind in ("shift", "scale"):
        values, probs = robustness(model, digits[0], kind)
        assert probs.shape == (len(values), 10)
    with pytest.raises(ValueError, match="sweep kind"):
        robustness(model, digits[0], "shear")


def test_transform_image_moves_the_ink():
    x = np.zeros((28, 28, 1), np.uint8)
    x[10:18, 12:16] = 255
    cols = lambda img: np.nonzero(img[..., 0].sum(axis=0))[0]  # noqa: E731
    assert cols(transform_image(x, shift=5)).min() == cols(x).min() + 5
    assert np.array_equal(transform_image(x), x)
    rotated = transform_image(x, rotate=90)
    assert rotated[..., 0].sum(axis=1).nonzero()[0].size < x[..., 0].sum(axis=1).nonzero()[0].size
    assert (transform_image(x, scale=0.5) > 0).sum() < (x > 0).sum()


def test_learning_step_lowers_the_loss_and_leaves_the_model_alone(model, digits):
    from cnn.teach.learning import learning_step

    before = [w.copy() for w in model.get_weights()]
    step = learning_step(model, digits[0], label=3, learning_rate=0.05)
    assert step.layer == "conv1" and step.kernel_before.shape == (3, 3, 1, 8)
    np.testing.assert_allclose(step.kernel_after, step.kernel_before - 0.05 * step.gradient, atol=1e-6)
    assert step.loss_after < step.loss_before
    assert step.probabilities_after[3] > step.probabilities_before[3]
    p = predict_proba(model, digits[0])[3]
    assert step.loss_before == pytest.approx(-np.log(max(p, 1e-7)), rel=1e-4)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the shared model is untouched


def test_predict_images_keeps_order_and_names_bad_files(model, digits):
    import io

    from PIL import Image

    from cnn.analysis.predict import predict_images
    from cnn.analysis.inference import predict_proba
    from cnn.data.preprocess import prepare_image

    def png(x):
        buffer = io.BytesIO()
        Image.fromarray(x[..., 0]).save(buffer, format="PNG")
        return buffer.getvalue()

    files = [("a.png", png(digits[0])), ("broken.png", b"\x89PNG\r\n\x1a\n broken"), ("b.png", png(digits[1]))]
    rows = predict_images(model, files, (28, 28, 1), list("0123456789"))
    assert [r["file"] for r in rows] == ["a.png", "broken.png", "b.png"]
    assert rows[1]["error"] and "prediction" not in rows[1]
    for row, x in ((rows[0], digits[0]), (rows[2], digits[1])):
        expected = predict_proba(model, prepare_image(png(x), (28, 28, 1)))
        assert row["error"] is None and row["class_index"] == int(expected.argmax())
        assert row["prediction"] == str(int(expected.argmax())) and row["confidence"] == pytest.approx(expected.max())
        assert list(row["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-6)


def test_learning_step_at_the_default_settings_lowers_the_loss_on_20_digits(default_model_dir):
    """The Learn page's defaults (the runner-up class as the label, the suggested rate) make the lesson work:
    one step lowers this image's loss and costs the other test images at most a point of accuracy."""
    import keras

    from cnn.data.load import load_dataset
    from cnn.teach.learning import LEARNING_RATES, learning_step, runner_up

    model = keras.saving.load_model(default_model_dir / "model.keras", safe_mode=True)
    data = load_dataset("mnist-sample")
    others = (data.x_test[-300:], data.y_test[-300:])
    fell = 0
    for x in data.x_test[:20]:
        probs = predict_proba(model, x)
        label = runner_up(probs)
        assert label != int(probs.argmax())
        step = learning_step(model, x, label, None, None, others)
        assert step.learning_rate in LEARNING_RATES
        fell += step.loss_after < step.loss_before
        assert step.others_after >= step.others_before - 0.01
    assert fell == 20


def test_learning_steps_on_one_model_from_two_threads_agree_and_leave_it_unchanged(default_model_dir):
    """Visitors stepping the same shared model at once: each gets what it would get alone (the compiled
    lesson functions take the weights as arguments and keep no state), and the model is never changed."""
    import threading

    import keras

    from cnn.data.load import load_dataset
    from cnn.teach.learning import learning_step

    model = keras.saving.load_model(default_model_dir / "model.keras", safe_mode=True)
    data = load_dataset("mnist-sample")
    before = [w.copy() for w in model.get_weights()]
    cases = [(data.x_test[i], (int(data.y_test[i]) + 1) % 10) for i in range(4)]
    alone = [learning_step(model, x, label) for x, label in cases]
    together = [None] * len(cases)

    def step(i):
        together[i] = learning_step(model, *cases[i])

    threads = [threading.Thread(target=step, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        assert (a.learning_rate, a.loss_before, a.loss_after) == (b.learning_rate, b.loss_before, b.loss_after)
        np.testing.assert_array_equal(a.gradient, b.gradient)
        np.testing.assert_array_equal(a.probabilities_after, b.probabilities_after)
    for w, w0 in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, w0)


def test_learning_step_tries_every_rate_and_measures_the_step(model, digits, trained):
    from cnn.teach.learning import LEARNING_RATES, learning_step

    data = trained[2]
    others = (data.x_test[100:200], data.y_test[100:200])
    step = learning_step(model, digits[1], label=5, learning_rate=0.01, others=others)
    assert [t.rate for t in step.trials] == list(LEARNING_RATES)
    chosen = next(t for t in step.trials if t.rate == 0.01)
    assert chosen.loss == pytest.approx(step.loss_after) and chosen.others_accuracy == step.others_after
    # The step's size is lr·‖gradient‖ over every weight, and the kernel moved by exactly −lr·gradient.
    assert step.step_norm > 0 and step.weight_norm > step.step_norm
    assert step.kernel_change == pytest.approx(float(np.abs(0.01 * step.gradient).max()), rel=1e-5)
    assert step.overshot == (step.loss_after > step.loss_before)
    # A rate off the ladder is tried too and shows up in the table.
    odd = learning_step(model, digits[1], label=5, learning_rate=0.002)
    assert 0.002 in [t.rate for t in odd.trials] and odd.others_before is None


def test_suggest_rate_picks_the_biggest_harmless_step():
    from cnn.teach.learning import RateTrial, suggest_rate

    trials = [RateTrial(0.001, 2.0, 0.99), RateTrial(0.01, 1.0, 0.985), RateTrial(0.1, 0.1, 0.5),
              RateTrial(1.0, 9.0, 0.1)]
    assert suggest_rate(trials, 3.0, 0.99) == 0.01  # 0.1 lowers the loss more but breaks other images
    assert suggest_rate(trials, 3.0, None) == 0.1  # without held-out images: the biggest step that helps
    assert suggest_rate(trials, 0.05, 0.99) == 0.001  # nothing lowers the loss: the smallest step

"""Workflows that join the layers below: fit and store a saved model's calibration, on the split its training
run used.
"""
from __future__ import annotations

from cnn.core.errors import CnnError
from cnn.analysis.calibration import Calibration, FILE, FLAG_SHARE, MAX_FIT_IMAGES, fit_calibration
from cnn.core.errors import CalibrationError


def _split_for(dataset, train_config):
    """((x_fit, y_fit) or a stream, (x_val, y_val), description) as the training run split `dataset`."""
    from cnn.run.train import split_validation

    if dataset.streamed:
        # Folder datasets stream their training images and validate on the held-out test split.
        return dataset.train_stream, (dataset.x_test, dataset.y_test), "held-out test split (the run's validation)"
    (x_fit, y_fit), val = split_validation(dataset.x_train, dataset.y_train, train_config.validation_split,
                                           train_config.seed)
    if val is None:
        raise CalibrationError("training used every training image (validation split 0), so no image is left to "
                               "fit the temperature and the threshold on: train with a validation split "
                               "(e.g. 0.05) to calibrate")
    return (x_fit, y_fit), val, f"{train_config.validation_split:.0%} validation split (seed {train_config.seed})"


def calibrate_model(name: str, dataset=None, flag_share: float = FLAG_SHARE, max_images: int = MAX_FIT_IMAGES,
                    on_progress=None) -> Calibration:
    """Fit a calibration for the saved model `name` and add calibration.json to its folder (atomically; the
    model file is untouched). `dataset` (a Dataset or a name) defaults to the one the model was trained on,
    split exactly as its spec's training config split it."""
    from cnn.data.datasets import Dataset, is_folder, load_dataset
    from cnn.store.registry import load_model, model_info, write_extra_file
    from cnn.model.spec import ModelSpec

    info = model_info(name)
    if not isinstance(dataset, Dataset):
        source = dataset or (info.metrics.get("dataset_source") if is_folder(info.dataset) else info.dataset)
        if source in (None, "", "?", "unknown"):
            raise CalibrationError(f"model {name!r} does not say which dataset it was trained on: give one "
                                   "(--dataset NAME)")
        dataset = load_dataset(source)
    if tuple(dataset.input_shape) != info.input_shape or dataset.num_classes != len(info.class_names):
        raise CalibrationError(f"model {name!r} takes {info.input_shape} images in {len(info.class_names)} "
                               f"classes but {dataset.name} has {dataset.input_shape} and {dataset.num_classes}")
    spec = ModelSpec.from_dict(info.spec)
    fit, validation, how = _split_for(dataset, spec.train)
    model = load_model(name)
    calibration = fit_calibration(model, fit, validation, flag_share, max_images, seed=spec.train.seed,
                                  fitted_on={"dataset": dataset.name, "source": dataset.source, "split": how},
                                  on_progress=on_progress)
    write_extra_file(name, FILE, calibration.to_json().encode())
    return calibration


def calibrate_if_possible(name: str, dataset=None, on_progress=None) -> tuple[Calibration | None, str]:
    """For a model that arrived without a calibration (an upload): fit one when its dataset can be had here,
    else leave it uncalibrated: (calibration, '') or (None, the reason, for people)."""
    try:
        return calibrate_model(name, dataset, on_progress=on_progress), ""
    except CnnError as exc:
        return None, f"uncalibrated (raw softmax, no out-of-distribution check): {exc}"


def calibrate_trained(model, spec, dataset, on_progress=None) -> tuple[Calibration | None, str]:
    """After a training run: (the calibration, '') — or (None, why not) when it cannot be fitted (e.g. no
    validation split), so the model is saved uncalibrated instead of failing."""
    try:
        fit, validation, how = _split_for(dataset, spec.train)
        return fit_calibration(model, fit, validation, seed=spec.train.seed, on_progress=on_progress,
                               fitted_on={"dataset": dataset.name, "source": dataset.source, "split": how}), ""
    except CalibrationError as exc:
        return None, str(exc)

"""Workflows that join the layers below: train → calibrate → evaluate → save (`train_and_save`,
`evaluate_and_save`), and fitting a saved model's calibration on the split its training run used
(`calibrate_model`, `calibrate_if_possible`, `calibrate_trained`).
"""
from __future__ import annotations

from cnn.analysis.calibration import FILE, FLAG_SHARE, MAX_FIT_IMAGES, Calibration, fit_calibration
from cnn.analysis.metrics import evaluate
from cnn.core.errors import CalibrationError, CnnError
from cnn.data.datasets import Dataset, dataset_slug, is_folder
from cnn.data.load import load_dataset
from cnn.data.splits import split_validation
from cnn.explain.film import film_probe, film_recorder_class
from cnn.model.spec import ModelSpec
from cnn.run.train import TrainResult, train
from cnn.store.registry import check_name, dataset_split, is_shipped, load_model, model_info, save_model, unique_name, write_extra_file


def _split_for(dataset, train_config):
    """((x_fit, y_fit) or a stream, (x_val, y_val), description) as the training run split `dataset`."""
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
    info = model_info(name)
    if not isinstance(dataset, Dataset):
        source = dataset or (info.metrics.get("dataset_source") if is_folder(info.dataset) else info.dataset)
        if source in (None, "", "?", "unknown"):
            raise CalibrationError(f"model {name!r} does not say which dataset it was trained on: give one "
                                   "(--dataset NAME)")
        dataset = load_dataset(source, **(dataset_split(info) if dataset is None else {}))
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




def evaluate_and_save(result: TrainResult, spec: ModelSpec, dataset: Dataset, name: str | None = None,
                      on_eval_progress=None, overwrite: bool = False, on_calibration_progress=None, film=None):
    """Calibrate a TrainResult's model (temperature and OOD score, on the run's own validation split), evaluate
    it on the test split and save it with its calibration.json and, when the run was filmed (`film`: its
    cnn.explain.film.FilmRecorder), its film.npz: (Evaluation, ModelInfo).

    A model that cannot be calibrated (no validation split) is saved uncalibrated; metrics.json says why. A
    trained model is never lost: if `name` is taken (before or while saving) it is saved under the next free
    name — compare the ModelInfo's name with `name` (saved_as_message says it for people)."""
    calibration, why = calibrate_trained(result.model, spec, dataset, on_progress=on_calibration_progress)
    evaluation = evaluate(result.model, dataset.x_test, dataset.y_test, dataset.class_names,
                          on_progress=on_eval_progress, calibration=calibration)
    metrics = {**evaluation.summary(), "dataset": dataset.name, "dataset_source": dataset.source,
               **({"split": dataset.split} if dataset.split else {}), "num_train": dataset.num_train, "epochs": len(result.history.get("epoch", [])),
               "train_seconds": round(result.seconds, 2), "status": result.status}
    if calibration is None:
        metrics["calibration_note"] = why
    extra = {FILE: calibration.to_json().encode()} if calibration is not None else {}
    if film is not None and len(film):
        extra["film.npz"] = film.to_bytes()
    info = save_model(name or unique_name(f"{spec.preset}-{dataset_slug(dataset.name)}"), result.model,
                      spec, result.history, metrics, overwrite=overwrite, if_taken="rename", extra_files=extra)
    return evaluation, info


def saved_as_message(requested: str | None, saved: str) -> str:
    """'saved as 'x'', or why it is not the requested name: it ships with the app, or another save took it."""
    if requested and requested != saved and is_shipped(requested):
        return f"the name {requested!r} belongs to a model that ships with the app, so this one was saved as {saved!r}"
    if requested and requested != saved:
        return (f"the name {requested!r} was taken by another model while this one trained, so it was saved as "
                f"{saved!r}")
    return f"saved as {saved!r}"


def train_and_save(spec: ModelSpec, dataset: Dataset, name: str | None = None, on_progress=None, stop=None,
                   strategy=None, on_eval_progress=None, overwrite: bool = False, progress_interval: float = 0.25,
                   keep=None, callbacks=(), on_calibration_progress=None, film=True):
    """Train, calibrate, evaluate on the test split and save to the registry: (TrainResult, Evaluation,
    ModelInfo). on_calibration_progress(done, total or None) reports the calibration's training images.

    A failed run (e.g. NaN loss) is neither evaluated nor saved: (result, None, None); nor is the run of a
    non-chief worker (result.chief is False: the chief saves). `keep(result)` is called as soon as training
    ends, before evaluation (so a caller holds the weights whatever follows).
    `film`: True films training (cnn.explain.film.FilmRecorder, saved as film.npz), False does not, or a
    FilmRecorder of the caller's own (a TrainingJob's, to show the frames live).
    """
    if name is not None:
        check_name(name)  # refuse a bad name before spending minutes training
    film = film_recorder(dataset) if film is True else None if film is False else film
    result = train(spec, dataset, on_progress=on_progress, stop=stop, strategy=strategy,
                   progress_interval=progress_interval,
                   callbacks=tuple(callbacks) if film is None else (*callbacks, film))
    if keep is not None:
        keep(result)
    if result.status == "failed" or not result.chief:
        return result, None, None
    evaluation, info = evaluate_and_save(result, spec, dataset, name, on_eval_progress, overwrite,
                                         on_calibration_progress, film)
    return result, evaluation, info


def film_recorder(dataset: Dataset):
    """A FilmRecorder (cnn.explain.film) watching the dataset's first test image."""
    return film_recorder_class()(*film_probe(dataset))

"""Model specs and what follows from them, before any data: `layers` (one class per layer kind, its shape and
receptive-field arithmetic), `spec` (ModelSpec / TrainConfig, `validate`, `preset`), `builder` (`build_model`,
`export_script`, `rebuild`), `memory` (`estimate`, `check_memory`: training memory against the budget) and
`timing` (`measure_speed`, `epoch_seconds`: how long training will take).
"""

"""Training, end to end: `train` (`train`: any tf.distribute strategy, a custom step), `workflows`
(`train_and_save`, `evaluate_and_save`, `calibrate_model`), `jobs` (`TrainingJob`: a background job a page
polls), `worker` (`ProcessTrainingJob`: training in a warm child process;
`WORKERS`: the pool that keeps it warm and recycles it) and `distribute` (strategies, TF_CONFIG).
"""

"""Models kept: `registry` (`save_model` atomic, `load_model`, `list_models`; shipped models read-only),
`metadata` (the schema every JSON file is read through), `bundles` (`bundle_bytes`, `import_model`: one
download and back, checked to the bottom), `export` (`export_model`: SavedModel, TFLite, ONNX, verified) and
`housekeeping` (`clean_up_at_start`: half-written folders a crash left behind).
"""

"""Images in: `imageio` (decode and vet files from their headers), `preprocess` (`prepare_image`, `prepare`: the one
recipe for drawings, uploads, photos and the CLI; its steps in `steps`), `datasets` (Dataset, the catalogue,
names, limits), `load` (`load_dataset`, `where`, `list_datasets`), `folders` (class-folder datasets, vetted and
streamed), `uploads` (the content-addressed upload cache), `archive` (safe zips) and `splits`
(`split_validation`).
"""

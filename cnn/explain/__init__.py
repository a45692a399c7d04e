"""What the network learned: `maximise` (receptive fields, activation maximisation), `patches` (`top_patches`),
`embedding` (`embedding_map`, `TsneJob`) and `film` (`film_recorder_class`, `load_film`: a film of training).
"""

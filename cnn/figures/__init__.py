"""Plotly figures from arrays (no Streamlit, testable without a browser): `style` (the one colour language),
`curves` (training curves, confusion matrix), `probabilities` (Predict's bars, calibration and OOD charts),
`pictures` (maps and mosaics sent as one image each, overlays, grids, the embedding map, film frames) and
`lessons` (the Learn page's figures).
"""

"""The engine's ground floor: errors people read (`errors`: CnnError and its kinds), numbers and labels for
people and the one label sanitiser (`text`), and TensorFlow imported quietly (`quiet.import_tensorflow`).
Imports nothing else of the engine.
"""

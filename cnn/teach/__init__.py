"""The Learn page's engine: `lessons` (convolution, ReLU, pooling, dense and softmax in NumPy, checked against
Keras), `walkthrough` (one image through this model, layer by layer), `learning` (`learning_step`: one gradient
step on one image), `hierarchy` (edges → parts → objects, checked) and `softmax` (`softmax_lesson`).
"""

"""The tested helpers behind training.ipynb's cells (one module per concern).

Cells import from the submodules directly (``from utils.notebook.load_weights import
load_weights_cell``); nothing is imported here, so a cell pays only for what it uses.
"""

"""The detection core every method adapter builds on: one torchvision Faster R-CNN (model.py), the data
pipeline (data.py) and box geometry helpers (geometry.py)."""

"""Datasets: one representation (`DetectionDataset`, COCO-style), loaders and writers for COCO json, Pascal VOC
and YOLO txt, the built-in synthetic `shapes`, the registry of those formats (`FORMATS`: detection, reading,
writing and the recipe kind each declares), the catalog behind `load(spec)`, and `check`."""

from .catalog import CATALOG, bccd_root, detect_format, list_datasets, load, load_shapes
from .check import check, format_report
from .coco import load_coco, save_coco
from .core import DetectionDataset
from .formats import FORMATS, DatasetFormat
from .images import image_size, validate_images
from .shapes import CLASSES as SHAPES_CLASSES
from .shapes import ShapesConfig, ensure_shapes
from .voc import load_voc, save_voc
from .yolo import load_yolo, save_yolo

__all__ = [
    "CATALOG", "FORMATS", "DatasetFormat", "DetectionDataset", "SHAPES_CLASSES", "ShapesConfig", "bccd_root", "check",
    "detect_format", "ensure_shapes", "format_report", "image_size", "list_datasets", "load", "load_coco", "load_shapes",
    "load_voc", "load_yolo", "save_coco", "save_voc", "save_yolo", "validate_images",
]

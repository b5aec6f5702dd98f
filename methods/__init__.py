"""Method adapters, one module each, registered by name (built-ins) or by entry point (plug-ins)."""

from __future__ import annotations

from benchmark.registry import Registry
from methods.base import Diagnostics, MethodAdapter, Paper, TrainResult

METHODS: Registry[type[MethodAdapter]] = Registry(
    "method",
    entry_point_group="noisybox_bench.methods",
    builtin_modules=("methods.faster_rcnn", "methods.clean", "methods.oa_mil", "methods.ssd_det", "methods.mmdet_backend",
                     "methods.retinanet", "methods.free_anchor", "methods.co_teaching", "methods.sd_locnet",
                     "methods.disco"),
)


def register_method(cls: type[MethodAdapter]) -> type[MethodAdapter]:
    """Class decorator: `@register_method class MyMethod(MethodAdapter): name = "my_method"`."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} must set a non-empty `name`")
    METHODS.add(cls.name, cls)
    return cls


def get_method(name: str) -> MethodAdapter:
    return METHODS.get(name)()


__all__ = ["METHODS", "Diagnostics", "MethodAdapter", "Paper", "TrainResult", "get_method", "register_method"]

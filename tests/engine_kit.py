"""Adapters that stop a run part-way (as a kill would), for the resume tests of the engine and its outputs."""

from __future__ import annotations


def stopping_at_call(method, call: int):
    """`method`'s adapter whose model raises KeyboardInterrupt on its `call`-th training forward."""

    class Stopping(type(method)):
        def build_model(self, cfg, num_classes):
            model = super().build_model(cfg, num_classes)
            forward, calls = model.forward, []

            def stop(*args, **kwargs):
                calls.append(1)
                if len(calls) == call:
                    raise KeyboardInterrupt
                return forward(*args, **kwargs)

            model.forward = stop
            return model

    return Stopping()


def stopping_at_epoch(method, epoch: int):
    """`method`'s adapter whose model raises KeyboardInterrupt when epoch `epoch` (0-based) starts."""

    class Stopping(type(method)):
        def build_model(self, cfg, num_classes):
            model = super().build_model(cfg, num_classes)

            def stop(e, num_epochs):
                if e == epoch:
                    raise KeyboardInterrupt

            model.set_epoch = stop
            return model

    return Stopping()

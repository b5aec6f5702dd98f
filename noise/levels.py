"""Noise-level lists as users type them: `0.1..0.4` (step 0.1), `0..0.3:0.05` (explicit step), `0.1,0.3`, or a mix
(`0,0.2..0.4`). Shared by `bench noise make` and the sweep runner."""

from __future__ import annotations

import math

from benchmark.errors import BenchError

DEFAULT_STEP = 0.1
_DIGITS = 10  # 0.1 + 2 * 0.1 is 0.30000000000000004; levels are rounded to this many decimals


def _number(token: str, text: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise BenchError(f"bad noise levels {text!r}: {token.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise BenchError(f"bad noise levels {text!r}: {token.strip()!r} is not finite")
    return value


def parse_levels(text: str | float | int) -> list[float]:
    """`"0.1..0.4"` -> [0.1, 0.2, 0.3, 0.4]; `"0.1,0.3"` -> [0.1, 0.3]. Order kept, duplicates dropped."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return [round(_number(str(text), str(text)), _DIGITS)]
    if not isinstance(text, str) or not text.strip():
        raise BenchError(f"bad noise levels {text!r}: give a level, a range a..b[:step] or a list a,b")
    out: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise BenchError(f"bad noise levels {text!r}: empty item")
        if ".." in part:
            span, _, step_s = part.partition(":")
            a_s, _, b_s = span.partition("..")
            a, b = _number(a_s, text), _number(b_s, text)
            step = _number(step_s, text) if step_s else DEFAULT_STEP
            if step <= 0:
                raise BenchError(f"bad noise levels {text!r}: step must be > 0")
            if b < a:
                raise BenchError(f"bad noise levels {text!r}: range {part!r} goes backwards")
            n = int(math.floor((b - a) / step + 1e-9))
            if n > 10_000:
                raise BenchError(f"bad noise levels {text!r}: {n + 1} levels is too many")
            values = [round(a + i * step, _DIGITS) for i in range(n + 1)]
        else:
            if ":" in part:
                raise BenchError(f"bad noise levels {text!r}: a step needs a range, as in 0.1..0.4:0.05")
            values = [round(_number(part, text), _DIGITS)]
        out.extend(v for v in values if v not in out)
    return out

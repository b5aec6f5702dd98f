"""Training recipes as data: the `fair` and `paper` profiles (the `cpu` profile lives in `benchmark.config`).

One YAML file per rule, in `benchmark/recipes/<profile>/`:
- `profile.yaml`: the profile's `model` and `train` sections (`inherit: OTHER` starts from another profile's);
- `dataset-<kind>.yaml`: changes for a dataset kind (`voc`, `coco`, `yolo`, `shapes`);
- `method-<method>.yaml`: changes for one method (`model`, `train` and its own `method` keys);
- `method-<method>@<kind>.yaml`: changes for one method on one dataset kind.
A rule file may say `inherit: NAME` to start from `method-NAME.yaml` of the same profile.

A value is either plain or `{value: V, source: "where it comes from"}`; the `paper` recipe gives every value
that differs from `fair` its source (file:line in the authors' repositories), which `bench recipe show` prints.
`benchmark.config.resolve_config` applies the layers in order: profile, dataset rule, method defaults, method
rule, method-on-dataset rule, user `--set`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from benchmark.errors import BenchError

ROOT = Path(__file__).resolve().parent
RULE_SECTIONS = ("model", "train", "method")


@dataclass(frozen=True)
class Layer:
    """One rule file: `values[section][key] = value`, `sources[section][key] = reference` where given."""

    label: str  # e.g. "profile paper", "method rule paper/ssd_det@voc"
    path: Path
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    description: str = ""


def data_profiles() -> tuple[str, ...]:
    """Profiles defined by data (a folder with a `profile.yaml`)."""
    return tuple(sorted(p.parent.name for p in ROOT.glob("*/profile.yaml")))


@cache
def _read(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise BenchError(f"cannot read recipe ({type(exc).__name__}: {first})", path) from None
    if not isinstance(data, dict):
        raise BenchError("a recipe file must be a mapping of sections", path)
    unknown = set(data) - {"description", "inherit", *RULE_SECTIONS}
    if unknown:
        raise BenchError(f"unknown recipe field(s) {', '.join(sorted(unknown))} (known: description, inherit, "
                         f"{', '.join(RULE_SECTIONS)})", path)
    return data


def _is_sourced(v: Any) -> bool:
    return isinstance(v, dict) and "value" in v and set(v) <= {"value", "source"}


def _layer(label: str, path: Path, sections: tuple[str, ...], seen: tuple[Path, ...] = ()) -> Layer:
    """The file's values (after its `inherit` chain), split into values and sources."""
    data = _read(path)
    values: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, str]] = {}
    parent = data.get("inherit")
    if parent is not None:
        ppath = _inherit_path(path, str(parent))
        if ppath in seen or ppath == path:
            raise BenchError(f"recipe inherits from itself ({parent})", path)
        base = _layer(label, ppath, sections, seen + (path,))
        values = {s: dict(v) for s, v in base.values.items()}
        sources = {s: dict(v) for s, v in base.sources.items()}
    for sec in sections:
        body = data.get(sec) or {}
        if not isinstance(body, dict):
            raise BenchError(f"recipe section {sec!r} must be a mapping", path)
        for key, v in body.items():
            if _is_sourced(v):
                values.setdefault(sec, {})[key] = v["value"]
                if v.get("source"):
                    sources.setdefault(sec, {})[key] = str(v["source"])
            else:
                values.setdefault(sec, {})[key] = v
                sources.get(sec, {}).pop(key, None)
    extra = set(data) & set(RULE_SECTIONS) - set(sections)
    if extra:
        raise BenchError(f"a {label.split()[0]} file may not set section(s) {', '.join(sorted(extra))}", path)
    return Layer(label, path, values, sources, str(data.get("description") or ""))


def _inherit_path(path: Path, parent: str) -> Path:
    if path.name == "profile.yaml":
        target = ROOT / parent / "profile.yaml"
    else:
        target = path.parent / f"method-{parent}.yaml"
    if not target.is_file():
        raise BenchError(f"recipe inherits from {parent!r}, which has no file ({target.name})", path)
    return target


def layers(profile: str, method: str | None, dataset_kind: str) -> list[Layer]:
    """The rule files that apply to (profile, method, dataset kind), in the order they apply: profile, dataset rule,
    method rule, method-on-dataset rule (the method's own defaults go between the dataset and method rules)."""
    folder = ROOT / profile
    if not (folder / "profile.yaml").is_file():
        raise BenchError(f"no recipe for profile {profile!r} (known: {', '.join(data_profiles())})")
    out = [_layer(f"profile {profile}", folder / "profile.yaml", ("model", "train"))]
    rule = folder / f"dataset-{dataset_kind}.yaml"
    if rule.is_file():
        out.append(_layer(f"dataset rule {profile}/{dataset_kind}", rule, ("model", "train")))
    if method:
        for name in (method, f"{method}@{dataset_kind}"):
            rule = folder / f"method-{name}.yaml"
            if rule.is_file():
                out.append(_layer(f"method rule {profile}/{name}", rule, RULE_SECTIONS))
    return out


def rule_files(profile: str) -> list[Path]:
    """Every rule file of a profile (for checks and documentation)."""
    return sorted((ROOT / profile).glob("*.yaml"))

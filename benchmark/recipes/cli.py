"""`bench recipe show`: a resolved training config, each value with the layer it came from."""

from __future__ import annotations

import json

import click

from benchmark.config import DATASET_KINDS, PROFILES


@click.group("recipe")
def recipe():
    """Show the training recipes (profiles `cpu`, `fair`, `paper`; docs/recipes.md)."""


@recipe.command("show")
@click.option("--method", "method_name", required=True, help="a registered method (bench methods)")
@click.option("--dataset", required=True,
              help=f"a dataset kind ({', '.join(DATASET_KINDS)}) or a dataset spec (catalog name or path)")
@click.option("--profile", type=click.Choice(PROFILES), default="paper", show_default=True)
@click.option("--level", "noise_level", type=float, default=None,
              help="noise level the cell trains at (some method defaults depend on it, e.g. OA-MIL's lambda)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="config override, as for bench run")
@click.option("--json", "as_json", is_flag=True, help="print {key: {value, from, source}} as JSON")
def show(method_name, dataset, profile, noise_level, overrides, as_json):
    """Print the resolved config of METHOD on DATASET under PROFILE, each value with where it came from (profile,
    dataset rule, method defaults, method rule, --set) and, for the `paper` recipe, its reference source."""
    from benchmark.config import parse_overrides, resolve_with_origin
    from methods import get_method

    kind = dataset if dataset in DATASET_KINDS else _kind_of(dataset)
    cfg, origin = resolve_with_origin(get_method(method_name), profile, kind, noise_level,
                                      parse_overrides(list(overrides)))
    rows = []
    for sec in ("model", "train", "method"):
        for key in sorted(cfg[sec]):
            layer, source = origin.get(f"{sec}.{key}", ("", ""))
            rows.append((f"{sec}.{key}", cfg[sec][key], layer, source))
    if as_json:
        click.echo(json.dumps({k: {"value": v, "from": layer, "source": src} for k, v, layer, src in rows},
                              indent=1))
        return
    level = "" if noise_level is None else f", noise level {noise_level:g}"
    click.echo(f"recipe {profile}: method {method_name} on {kind}{level}")
    width = min(max(len(f"{k} = {_text(v)}") for k, v, _, _ in rows), 56)
    for key, value, layer, source in rows:
        text = f"{key} = {_text(value)}"
        click.echo(f"{text:<{width}}  <- {layer}" + (f"  [{source}]" if source else ""))


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _kind_of(spec: str) -> str:
    """The dataset kind of a dataset spec, as `bench run` finds it (the training split's format)."""
    from benchmark.config import dataset_kind
    from benchmark.datasets import load

    splits = load(spec, progress=False)
    return dataset_kind(splits["train"])

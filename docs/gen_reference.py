"""Generated docs pages (run by mkdocs-gen-files at build time, never committed): the config-key reference from
`benchmark.config` and every registered method's `method.*` keys, so the docs cannot drift from the code."""

import json

import mkdocs_gen_files

from benchmark import config as C
from benchmark.config_docs import markdown
from methods import METHODS, get_method


def method_keys() -> str:
    out = ["## Method keys", "",
           "Defaults as resolved for noise level 0.4 on a COCO-layout dataset; some depend on the level and the "
           "dataset kind (see each method's docs).", ""]
    for name in METHODS.names():
        adapter = get_method(name)
        cfg = {p: adapter.default_config(p, 0.4, "coco") or {} for p in C.PROFILES}
        keys = sorted({k for c in cfg.values() for k in c})
        if not keys:
            continue
        out += [f"### `{name}`", "", "| key | " + " | ".join(C.PROFILES) + " |", "|---|" + "---|" * len(C.PROFILES)]
        out += [f"| `method.{k}` | " + " | ".join(f"`{json.dumps(cfg[p].get(k))}`" for p in C.PROFILES) + " |"
                for k in keys]
        out.append("")
    return "\n".join(out)


with mkdocs_gen_files.open("reference/config.md", "w") as fh:
    fh.write(markdown() + "\n" + method_keys() + "\n")

"""``orchestrator models``: the configured models with key, server and weights status; ``models pull``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _config(args: argparse.Namespace):
    from ..config import load_config

    return load_config(args.config)


def cmd_models(args: argparse.Namespace) -> int:
    from ..providers import model_files, provider_info

    cfg = _config(args)
    rows = []
    for model_id, spec in cfg.models.items():
        if provider_info(spec.provider).local_weights:
            gguf = spec.options.get("gguf")
            cached = (
                Path(os.path.expanduser(gguf)).is_file() if gguf else model_files.cached_path() is not None
            )
        else:
            cached = None
        key_set = bool(os.environ.get(spec.api_key_env)) if spec.api_key_env else None
        rows.append(
            {
                "id": model_id,
                "provider": spec.provider,
                "model": spec.model,
                "default": model_id == cfg.default_model,
                "temperature": spec.temperature,
                "max_tokens": spec.max_tokens,
                "price": spec.price.model_dump(mode="json", exclude_none=True) if spec.price else None,
                "api_key_env": spec.api_key_env,
                "key_set": key_set,
                "local_cached": cached,
                "fallbacks": spec.fallbacks,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"config: {cfg.path}")
    header = f"{'id':<30} {'provider':<10} {'price in/out $/M':<18} {'key':<22} {'notes'}"
    print(header)
    print("-" * len(header))
    for r in rows:
        price = (
            "free"
            if provider_info(r["provider"]).free
            else (f"{r['price']['input']:g}/{r['price']['output']:g}" if r["price"] else "unknown")
        )
        if r["api_key_env"]:
            key = f"{r['api_key_env']} {'set' if r['key_set'] else 'NOT SET'}"
        else:
            key = "-"
        notes = []
        if r["default"]:
            notes.append("default")
        if r["local_cached"] is not None:
            notes.append("weights cached" if r["local_cached"] else "weights not yet fetched")
        if r["fallbacks"]:
            notes.append("fallbacks: " + ", ".join(r["fallbacks"]))
        print(f"{r['id']:<30} {r['provider']:<10} {price:<18} {key:<22} {'; '.join(notes)}")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from ..providers import model_files, provider_info

    cfg = _config(args)
    ids = (
        [args.id]
        if args.id
        else [m for m, s in cfg.models.items() if provider_info(s.provider).local_weights]
    )
    for model_id in ids:
        spec = cfg.model_spec(model_id)
        if not provider_info(spec.provider).local_weights:
            print(f"{model_id}: provider {spec.provider} has no local weights to pull", file=sys.stderr)
            return 2
        if spec.options.get("gguf"):
            print(f"{model_id}: uses {spec.options['gguf']} (a local file; nothing to pull)")
            continue
        path = model_files.fetch()
        print(f"{model_id}: {path}")
    return 0


def register(sub) -> None:
    """Add models and models pull to the main parser."""
    p = sub.add_parser("models", help="list configured models; `models pull` fetches local weights")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)
    msub = p.add_subparsers(dest="models_command", metavar="")
    pp = msub.add_parser("pull", help="download and verify local model weights")
    pp.add_argument("id", nargs="?", help="a local model id (default: every local model)")
    pp.set_defaults(func=cmd_models_pull)

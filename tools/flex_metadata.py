"""Writes or checks the Flex Template metadata files, generated from the jobs' own options.

    python -m tools.flex_metadata --write   # after changing a flag or its help text
    python -m tools.flex_metadata --check   # exit 1 when a committed file is stale

One file per job, `infra/dataflow/<job>-metadata.json`, for `gcloud dataflow
flex-template build --metadata-file`. Every flag of the job's option classes
(`OPTION_CLASSES`) becomes a parameter: its name, a label, its help text as
`--help` prints it (defaults filled in), `isOptional` unless the help text
starts with "Required.", and a regex for choices and for true/false
switches. Beam's own options (runner, project, region, ...) are not
parameters: Dataflow passes those itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines import backfill, streaming
from pipelines.flags import FlagParser
from pipelines.flex_template import JOBS, job_parser

PROJECT_ROOT = Path(__file__).resolve().parents[1]
METADATA_DIR = PROJECT_ROOT / "infra" / "dataflow"
TITLES = {
    "backfill": "Stripe contributions backfill",
    "streaming": "Stripe contributions streaming",
}
DESCRIPTIONS = {
    "backfill": (backfill.__doc__ or "").strip().splitlines()[0],
    "streaming": (streaming.__doc__ or "").strip().splitlines()[0],
}


def metadata_path(job: str) -> Path:
    return METADATA_DIR / f"{job}-metadata.json"


def help_text(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    """The help as argparse prints it: `%(default)s` and friends filled in, one line."""
    values = {**vars(action), "prog": parser.prog}
    if isinstance(action.default, str) and action.default.startswith(f"{PROJECT_ROOT}/"):
        # A default inside the project (the bundled sample) is shown relative to it,
        # as it is in the image, not as a path on the machine that generated the file.
        values["default"] = action.default.removeprefix(f"{PROJECT_ROOT}/")
    return " ".join(str(action.help or "").split()) % values


def parameter(action: argparse.Action, parser: argparse.ArgumentParser) -> dict[str, Any]:
    name = action.dest
    text = help_text(action, parser)
    entry: dict[str, Any] = {
        "name": name,
        "label": name.replace("_", " ").capitalize(),
        "helpText": text,
        "isOptional": not text.startswith("Required."),
    }
    if isinstance(action, argparse._StoreTrueAction):
        entry["regexes"] = ["^(true|false)$"]
    elif action.choices:
        entry["regexes"] = [f"^({'|'.join(str(c) for c in action.choices)})$"]
    return entry


def metadata(job: str) -> dict[str, Any]:
    """The metadata document for `job`, parameters in the order `--help` lists them."""
    option_classes, _ = JOBS[job]
    parser = job_parser(option_classes)
    return {
        "name": TITLES[job],
        "description": DESCRIPTIONS[job],
        "streaming": job == "streaming",
        "parameters": [parameter(action, parser) for action in parser._actions],
    }


def rendered(job: str) -> str:
    return json.dumps(metadata(job), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = FlagParser(
        prog="python -m tools.flex_metadata", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="Write every job's metadata file.")
    mode.add_argument(
        "--check", action="store_true", help="Exit 1 when a committed file differs from its job."
    )
    args = parser.parse_args(argv)
    stale = []
    for job in sorted(JOBS):
        path = metadata_path(job)
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered(job))
            print(f"wrote {path.relative_to(PROJECT_ROOT)}")
        elif not path.exists() or path.read_text() != rendered(job):
            stale.append(str(path.relative_to(PROJECT_ROOT)))
    if stale:
        print(
            f"stale: {', '.join(stale)}; run python -m tools.flex_metadata --write", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

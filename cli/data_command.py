"""`arr data debian-desc OUT`: data sets the toolkit builds itself (arretrieve/data/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .output import console

app = typer.Typer(help="Build the data sets the benchmarks and recipes use, from public sources.", no_args_is_help=True)


@app.command("debian-desc")
def debian_desc(
    out: Path = typer.Argument(..., help="Folder to write (test/ dev/ full/ BEIR folders, train/, meta/, SHA256SUMS)."),
    lists_dir: Optional[Path] = typer.Option(None, help="An apt lists folder holding the suite's Translation-en, "
                                             "Packages and InRelease files (default: /var/lib/apt/lists)."),
    fetch: bool = typer.Option(False, "--fetch", help="First run `apt-get update` with this machine's apt sources "
                               "into a private folder under the toolkit home (English translations included)."),
    suite: str = typer.Option("bookworm", help="Debian suite."),
    component: str = typer.Option("main", help="Archive component."),
    arch: str = typer.Option("amd64", help="Architecture of the Packages files (any: every one found)."),
    seed: int = typer.Option(13, help="Seed of the query and distractor samples and the triplets' negatives."),
    gzip: str = typer.Option("auto", help="Gzip the big files (train/, meta/, full/corpus): auto (above 40 MB in all), always or never."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists (only once the new set is whole)."),
) -> None:
    """The Debian package-description set: synopses as queries, long descriptions as documents."""
    from arretrieve.data.debian_desc import build_debian_desc, fetch_apt_lists, find_apt_lists
    from arretrieve.errors import ArrError
    from arretrieve.home import arr_home

    if fetch and lists_dir is not None:
        raise ArrError("--fetch writes its own lists folder; leave out --lists-dir")
    folder = fetch_apt_lists(arr_home() / "apt") if fetch else (lists_dir or Path("/var/lib/apt/lists"))
    built = build_debian_desc(out, find_apt_lists(folder, suite, component, arch), seed=seed, gzip_files=gzip,
                              overwrite=overwrite, log=lambda line: console.print(line, highlight=False, markup=False))
    release = built.release.get("Description") or "an unknown release"
    if built.matches_reference:
        verdict = "every checksum equals the reference set's (the one BENCHMARKS.md measured)"
    else:
        verdict = (f"{len(built.differing)} files differ from the reference set (Debian 12.15), e.g. "
                   f"{', '.join(built.differing[:3])}: figures measured on this set are not comparable with BENCHMARKS.md")
    console.print(f"wrote {out} from {release}: {verdict}; checksums in {built.checksums}", highlight=False, markup=False)

"""A hidden corpus of bad inputs, each fed to recflow the way a user would, and how each is handled.

    python -m bench.corpus [--keep]

Each case builds its input in a temporary folder (a damaged zip, a hostile member name, a file of
millisecond timestamps, a config no run could survive, a damaged database ...), runs the piece of
recflow that meets it first (``ingest_dataset``, ``load_config``, ``locate_dataset``, the database
checks), and prints one row: *refused* (an error; its first line), *handled* (ingested, with its
rejects and notes) or *crashed* (an exception recflow did not mean: a bug). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

MEANT = ("DatasetFormatError", "TooManyRejectsError", "ConfigError", "DatasetNotFoundError", "DamagedDatabase")

MOVIES = b"movieId,title,genres\n10,Heat (1995),Action\n20,Up (2009),Animation\n"
GOOD = b"userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,20,3.5,964981247\n2,10,0.5,964982224\n"


def release(folder: Path, ratings: bytes, movies: bytes = MOVIES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.csv").write_bytes(ratings)
    (folder / "movies.csv").write_bytes(movies)
    return folder


def zipped(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def symlink_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("movies.csv", MOVIES)
        link = zipfile.ZipInfo("ratings.csv")
        link.external_attr = (0o120777 << 16) | 0x20  # a symlink entry pointing outside the archive
        zf.writestr(link, "/etc/passwd")
    return path


def damaged_sqlite(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 200,)] * 500)
    with open(path, "r+b") as fh:
        fh.seek(4096)
        fh.write(os.urandom(8192))
    return path


def cases(tmp: Path) -> dict[str, Callable[[], str]]:
    from recflow.data import ingest_dataset
    from recflow.data.locate import locate_dataset
    from recflow.experiments.config import load_config
    from recflow.runtime.servers import check_mlflow_database, check_prefect_database

    def ingest(source: Path, **kw) -> str:
        out = _mkdir(tmp / f"out-{source.name}-{len(os.listdir(tmp))}")
        summary = ingest_dataset(source, out, max_reject_fraction=kw.get("max_reject", 0.5))
        return f"{summary['n_ratings']} ratings kept; rejects {summary['reject_reasons'] or 'none'}; notes {summary.get('notes', [])}"

    def config(text: str, overrides: tuple[str, ...] = ()) -> str:
        path = tmp / f"config-{len(os.listdir(tmp))}.yaml"
        path.write_text(text)
        load_config(path, list(overrides))
        return "accepted"

    def data_dir(path: Path) -> str:
        os.environ["RECFLOW_DATA_DIR"] = str(path)
        try:
            return str(locate_dataset("ml-latest-small", None, tmp / "cache", download=False))
        finally:
            del os.environ["RECFLOW_DATA_DIR"]

    bomb = GOOD + b"\n" * (300 << 20)
    return {
        "zip bomb (300 MB of newlines in ratings.csv)": lambda: ingest(zipped(tmp / "bomb.zip", {"ratings.csv": bomb, "movies.csv": MOVIES})),
        "zip member ../movies.csv": lambda: ingest(zipped(tmp / "dotdot.zip", {"ratings.csv": GOOD, "../movies.csv": MOVIES})),
        "zip member /ratings.csv": lambda: ingest(zipped(tmp / "abs.zip", {"/ratings.csv": GOOD, "movies.csv": MOVIES})),
        "zip member a symlink to /etc/passwd": lambda: ingest(symlink_zip(tmp / "link.zip")),
        "zip truncated to half its size": lambda: ingest(_truncated(zipped(tmp / "cut.zip", {"ratings.csv": GOOD * 200, "movies.csv": MOVIES}))),
        "a text file named .zip": lambda: ingest(_write(tmp / "fake.zip", b"userId,movieId\n")),
        "timestamps in milliseconds": lambda: ingest(release(tmp / "ms", GOOD.replace(b"\n", b"000\n").replace(b"timestamp000", b"timestamp"))),
        "one millisecond timestamp among seconds": lambda: ingest(release(tmp / "mixed", GOOD.replace(b"964982703", b"964982703000"))),
        "a negative timestamp": lambda: ingest(release(tmp / "neg", GOOD.replace(b"964982703", b"-5"))),
        "user id written 1.0": lambda: ingest(release(tmp / "float-id", GOOD.replace(b"\n2,10", b"\n2.0,10"))),
        "a 25-digit item id": lambda: ingest(release(tmp / "overflow", GOOD.replace(b"\n2,10", b"\n2,1234567890123456789012345"))),
        "a re-rating later in the log": lambda: ingest(release(tmp / "rerate", GOOD + b"1,10,1.0,964999999\n")),
        "ratings.csv with a header only": lambda: ingest(release(tmp / "header", b"userId,movieId,rating,timestamp\n")),
        "ratings.csv in UTF-16": lambda: ingest(release(tmp / "utf16", GOOD.decode().encode("utf-16"))),
        "a NUL byte inside a row": lambda: ingest(release(tmp / "nul", GOOD.replace(b"3.5", b"3\x005"))),
        "the header repeated mid-file (two files concatenated)": lambda: ingest(release(tmp / "concat", GOOD + GOOD.replace(b"\n1,", b"\n3,"))),
        "one 20 MB line without a newline": lambda: ingest(release(tmp / "oneline", b"userId,movieId,rating,timestamp\n" + b"1" * (20 << 20))),
        "movies.csv missing": lambda: ingest(_without(release(tmp / "nomovies", GOOD), "movies.csv")),
        "every rating out of range": lambda: ingest(release(tmp / "range", GOOD.replace(b".", b""))),
        "config: an empty file": lambda: config(""),
        "config: dataset.name ../../x": lambda: config("dataset:\n  name: ../../x\n"),
        "config: evaluation.ks [10, 10000000]": lambda: config("evaluation:\n  ks: [10, 10000000]\n"),
        "config: two_tower dim 1,000,000": lambda: config("models:\n  - name: two_tower\n    dim: 1000000\n"),
        "config: bootstrap_samples 1e9": lambda: config("evaluation:\n  bootstrap_samples: 1000000000\n"),
        "config: a python tag (!!python/object)": lambda: config("dataset: !!python/object/apply:os.system ['true']\n"),
        "config: a list at the top": lambda: config("- dataset\n"),
        "RECFLOW_DATA_DIR that does not exist": lambda: data_dir(tmp / "unmounted"),
        "RECFLOW_DATA_DIR an empty mount point": lambda: data_dir(_mkdir(tmp / "mountpoint")),
        "a damaged mlflow.db": lambda: (check_mlflow_database(f"sqlite:///{damaged_sqlite(tmp / 'm' / 'mlflow.db')}"), "accepted")[1],
        "a damaged .prefect/server.db": lambda: (check_prefect_database(_parent_of(damaged_sqlite(tmp / "p" / ".prefect" / "server.db"))), "accepted")[1],
        "mlflow.db that is a text file": lambda: (check_mlflow_database(f"sqlite:///{_write(tmp / 't' / 'mlflow.db', b'text' * 500)}"), "accepted")[1],
    }


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _parent_of(db: Path) -> Path:
    os.environ.pop("PREFECT_SERVER_DATABASE_CONNECTION_URL", None)
    return db.parent.parent


def _truncated(path: Path) -> Path:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    return path


def _without(folder: Path, name: str) -> Path:
    (folder / name).unlink()
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="recflow-corpus-"))
    crashed = 0
    print("| input | handled as | what recflow said |\n|---|---|---|")
    try:
        for name, case in cases(tmp).items():
            try:
                outcome, said = "handled", case()
            except Exception as exc:  # noqa: BLE001 - the point is to see every kind
                meant = type(exc).__name__ in MEANT or any(c.__name__ in MEANT for c in type(exc).__mro__)
                outcome = "refused" if meant else "crashed"
                crashed += not meant
                said = f"{type(exc).__name__}: {' / '.join(str(exc).splitlines()[:2])}"
            said = said.replace(str(tmp), "<tmp>").replace("|", "\\|")
            print(f"| {name} | {outcome} | {said[:230]} |", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{crashed} crashed (an exception recflow did not mean)")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Sample label files shared by the reader fuzz tests and ``benchmarks/robustness.py``."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def sliderunner_bytes(path: Path) -> bytes:
    """The bytes of a small valid SlideRunner database written at ``path``: 40 annotations of
    the four geometry types, two persons' labels each."""
    if path.exists():
        path.unlink()
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE Slides (uid INTEGER PRIMARY KEY, filename TEXT, width INTEGER,
                             height INTEGER, directory TEXT);
        CREATE TABLE Classes (uid INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE Persons (uid INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE Annotations (uid INTEGER PRIMARY KEY, slide INTEGER, type INTEGER,
                                  agreedClass INTEGER, deleted INTEGER);
        CREATE TABLE Annotations_label (uid INTEGER PRIMARY KEY, person INTEGER, class INTEGER,
                                        annoId INTEGER);
        CREATE TABLE Annotations_coordinates (uid INTEGER PRIMARY KEY, coordinateX INTEGER,
                                              coordinateY INTEGER, slide INTEGER,
                                              annoId INTEGER, orderIdx INTEGER);
        INSERT INTO Slides VALUES (1, 's.svs', 5000, 5000, NULL);
        INSERT INTO Classes VALUES (1, 'Mitosis'), (2, 'Nonmitosis');
        INSERT INTO Persons VALUES (1, 'p1'), (2, 'p2');
        """
    )
    for uid in range(1, 41):
        kind = (1, 2, 3, 5)[uid % 4]
        con.execute("INSERT INTO Annotations VALUES (?,1,?,?,0)", (uid, kind, 1 + uid % 2))
        for k in range(1 if kind == 1 else 3):
            con.execute(
                "INSERT INTO Annotations_coordinates (coordinateX, coordinateY, slide, annoId,"
                " orderIdx) VALUES (?,?,1,?,?)",
                (uid * 10 + k * 7, uid * 20 + k * 3, uid, k),
            )
        con.execute(
            "INSERT INTO Annotations_label (person, class, annoId) VALUES (1, 1, ?)", (uid,)
        )
        con.execute(
            "INSERT INTO Annotations_label (person, class, annoId) VALUES (2, 2, ?)", (uid,)
        )
    con.commit()
    con.close()
    return path.read_bytes()

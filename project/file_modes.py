"""The data folder and the embedded database are readable by their owner only.

The SQLite file holds sessions, password hashes and encrypted routing keys; with the default
umask it and its folder would be readable by every account on the machine. The folder is made
0700 and the database file 0600 before SQLite first opens it (SQLite creates its -wal and -shm
journals with the database file's own mode), and loose modes left by an earlier release are
tightened whenever a connection opens.
"""

import os
from pathlib import Path

DATA_DIR_MODE = 0o700
DATABASE_FILE_MODE = 0o600
# SQLite's write-ahead log and its shared-memory index hold the same rows as the file itself.
JOURNAL_SUFFIXES = ("-wal", "-shm", "-journal")


def secure_data_dir(path: Path) -> None:
    """Create the data folder if needed, readable and writable by its owner only."""
    path.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, DATA_DIR_MODE)


def secure_sqlite_files(database: Path) -> None:
    """Create the database file owner-only if missing, and tighten it and its journals."""
    if str(database) in ("", ":memory:") or str(database).startswith("file:"):
        return  # an in-memory database, or a URI SQLite opens itself
    if not database.exists():
        # Created here, not by SQLite (which would use 0644 under the usual umask), so the file
        # is never readable by others, not even between its creation and a chmod.
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, DATABASE_FILE_MODE))
    for path in (database, *(database.with_name(database.name + s) for s in JOURNAL_SUFFIXES)):
        if path.exists():
            _tighten(path, DATABASE_FILE_MODE)


def tighten_on_connect(sender, connection, **kwargs) -> None:
    """connection_created receiver: keep an SQLite database file and its journals owner-only."""
    if connection.vendor == "sqlite" and not connection.is_in_memory_db():
        secure_sqlite_files(Path(connection.settings_dict["NAME"]))


def _tighten(path: Path, mode: int) -> None:
    status = path.stat()
    # Only its owner may change a file's mode; a folder someone else provides is left as it is.
    if status.st_uid == os.getuid() and status.st_mode & 0o777 != mode:
        path.chmod(mode)

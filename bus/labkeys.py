"""The lab's own CURVE keys: security on by default, with nothing to write in the lab file.

A lab file without `bus.security` runs its bus under CURVE with key pairs kept under
`<data_dir>/keys/` (a folder only its owner may open; every secret file owner-only): one pair
the servers and the hub share, and one identity per principal, i.e. per process of the lab file
(`drivers`, `daemon`, every other driver host, ...) and `operator` for people, scripts and the
console. `ionpilot up` creates the missing ones on its first run (`ensure_lab_keys`); every
process then reads them (`lab_security`) and speaks as the principal named by the environment
variable `IONPILOT_IDENTITY` (set by `up` and by `ionpilot deploy` unit files; `operator`
otherwise). Each principal's name is its authenticated identity on the bus, so the hub can
let it publish only the topics it owns (`BusSecurity.owners`).

An explicit `bus.security` section (`curve: true` with keys of one's own, or `curve: false`)
replaces all of this.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from ionpilot.bus.codec import check_name
from ionpilot.bus.security import SecurityError, create_keypair, read_public_key
from ionpilot.bus.settings import BusSecurity, CurveClient

KEY_DIR: Final = "keys"
SERVER: Final = "server"
OPERATOR: Final = "operator"
IDENTITY_ENV: Final = "IONPILOT_IDENTITY"


def key_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / KEY_DIR


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One creator at a time (several processes may start at once on a fresh lab)."""
    with open(folder / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_lab_keys(
    data_dir: str | os.PathLike[str], principals: Mapping[str, str], *, server: bool = True
) -> list[str]:
    """Create the server pair (unless `server` is False: a lab file with keys of its own) and
    each principal's pair that is missing; returns the names created. The folder is made
    owner-only (0700), the secret files 0600."""
    folder = key_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    created: list[str] = []
    with _locked(folder):
        for name in (SERVER, *principals) if server else tuple(principals):
            check_name(name)
            if not (folder / f"{name}.key_secret").exists():
                _create_atomically(folder, name)
                created.append(name)
    return created


def _create_atomically(folder: Path, name: str) -> None:
    """Write the pair in a private folder, then rename each file into place (public first,
    the secret last: its presence means the pair is whole), so no reader sees half a file."""
    staging = Path(tempfile.mkdtemp(prefix=f".new-{name}-", dir=folder))
    try:
        public, secret = create_keypair(staging, name)
        os.replace(public, folder / public.name)
        os.replace(secret, folder / secret.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def lab_security(
    data_dir: str | os.PathLike[str],
    principals: Mapping[str, str],
    owners: Mapping[str, tuple[str, ...]],
    identity: str | None = None,
) -> BusSecurity:
    """CURVE settings from the lab's key folder: `principals` (name -> role) are the allow-list,
    `identity` (default: `$IONPILOT_IDENTITY`, else `operator`) the key this process uses.
    Raises `SecurityError` when the keys have not been created (`ionpilot up` creates them)."""
    folder = key_dir(data_dir)
    who = identity or os.environ.get(IDENTITY_ENV) or OPERATOR
    if who not in principals:
        raise SecurityError(
            f"{IDENTITY_ENV}={who} is not a principal of this lab "
            f"(known: {', '.join(sorted(principals))})"
        )
    server_public = folder / f"{SERVER}.key"
    if not server_public.exists():
        raise SecurityError(
            f"the lab's bus keys are missing under {folder}: `ionpilot up` creates them on its "
            "first run (or turn security off in the lab file: bus: {security: {curve: false}})"
        )
    clients = {  # a principal added since the keys were made has none yet: `up` makes it
        name: CurveClient(read_public_key(folder / f"{name}.key"), role)  # type: ignore[arg-type]
        for name, role in principals.items()
        if (folder / f"{name}.key").exists()
    }
    own = folder / f"{who}.key_secret"
    server_secret = folder / f"{SERVER}.key_secret"
    return BusSecurity(
        curve=True,
        server_public_key=read_public_key(server_public),
        server_key_file=str(server_secret) if os.access(server_secret, os.R_OK) else "",
        client_key_file=str(own),
        clients=clients,
        owners={name: tuple(prefixes) for name, prefixes in owners.items() if name in clients},
    )

"""`earmark-cloud keys rotate`: a new master key, with every live owner's data key and the
quarantine key wrapped under it and the ledgers (erasures, deletions) re-MACed, then the old key file
replaced. Data keys do not change, so no blob is rewritten.

Order, so that a crash anywhere leaves a store that opens:
  1. the new key is written beside the old one (`master.key.new`, 0600);
  2. one database transaction re-wraps every key under it;
  3. the ledgers are rewritten under it;
  4. `master.key.new` replaces `master.key`: the old key is gone.
When a store opens and finds `master.key.new`, it finishes what steps 2 to 4 began (or, if the
database never switched, drops the unused new key): `finish_rotation`.

Old backups age out here: a backup's rows hold keys wrapped under the master key of their
day, so once that key is rotated away (and no copy of it is kept), the backup opens nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from earmark.cloud.store.crypto import load_master_key, new_key
from earmark.cloud.store.database import Cursor, StoreError
from earmark.cloud.store.keys import Keys
from earmark.cloud.store.ledger import Ledger
from earmark.runtime.durable import write_file


def pending_path(master_key_path: Path) -> Path:
    return master_key_path.with_name(master_key_path.name + ".new")


def rotate(keys: Keys, master_key_path: Path, ledgers: list[Ledger], owner_ids: list[str],
           transaction: Callable[[], AbstractContextManager[Cursor]]) -> int:
    """Rotate the master key (see the module docstring); `transaction()` is the store's
    audited write. Returns how many owner keys were re-wrapped."""
    pending = pending_path(master_key_path)
    if pending.exists():
        raise StoreError(f"{pending} exists: an earlier rotation did not finish; open the store once to finish it")
    fresh = new_key()
    write_file(pending, base64.b64encode(fresh) + b"\n")  # 1
    with transaction() as cur:  # 2
        count = keys.rewrap_all(cur, owner_ids, fresh)
    for ledger in ledgers:  # 3
        ledger.rewrap(fresh)
    pending.replace(master_key_path)  # 4
    keys.master_key = fresh
    return count


def finish_rotation(keys: Keys, master_key_path: Path, ledgers: list[Ledger]) -> bytes:
    """At open: if a rotation was interrupted, finish it, or drop its unused key. Returns the
    master key the store is under now. `ledgers` are under the old key."""
    pending = pending_path(master_key_path)
    if not pending.exists():
        return keys.master_key
    fresh = load_master_key(pending)
    if not keys.opens_store(fresh):
        pending.unlink()  # the database never switched: the rotation did not happen
        return keys.master_key
    for ledger in ledgers:
        try:
            ledger.check()
            ledger.rewrap(fresh)
        except StoreError:
            type(ledger)(ledger.path, fresh).check()  # already rewritten (else this raises: tampered)
    pending.replace(master_key_path)
    keys.master_key = fresh
    return fresh

"""What an owner is owed: their export (fail closed), its independent check, the erasure of
everything of theirs, single-clip deletion, and retention."""

from earmark.cloud.owner.erasure import Erasure, delete_clip, erase_owner
from earmark.cloud.owner.export import ExportError, ExportResult, export_owner
from earmark.cloud.owner.retention import purge_expired
from earmark.cloud.owner.verify_export import verify_export

__all__ = ["Erasure", "ExportError", "ExportResult", "delete_clip", "erase_owner", "export_owner",
           "purge_expired", "verify_export"]

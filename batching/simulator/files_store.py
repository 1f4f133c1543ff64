"""The simulator's Files API store: uploads by Gemini's resumable protocol, and generated files.

The Batch API reads its requests from an uploaded JSONL file and writes its results to a
generated one, so the simulator keeps both in memory as ``files/{id}`` resources the unmodified
SDK can upload (``client.files.upload``), read (``files.get``) and download (``files.download``).
The store is plain state; ``batch_routes`` speaks HTTP for it.
"""

from __future__ import annotations

import hashlib
import uuid
from base64 import b64encode
from dataclasses import dataclass, field

from batching.simulator.batch_jobs import rfc3339

#: How long Gemini keeps a file; shown as ``expirationTime`` (the simulator keeps it until reset).
FILE_LIFETIME_S = 48 * 3600.0


class UploadError(ValueError):
    """An upload step Gemini's upload server would refuse (bad offset, unknown session)."""


@dataclass
class StoredFile:
    """One ``files/{id}`` resource: its bytes once uploaded or generated."""

    name: str
    mime_type: str
    display_name: str | None
    created_wall: float
    #: ``UPLOADED`` (by a client) or ``GENERATED`` (a batch job's results).
    source: str = "UPLOADED"
    #: Bytes declared when the upload started, for checking the finalized size.
    expected_size: int = 0
    data: bytearray = field(default_factory=bytearray)
    #: False while an upload is still active: such a file is not shown or served yet.
    complete: bool = False

    def body(self, base_url: str) -> dict[str, object]:
        """The File resource as Gemini's REST API returns it (camelCase, int64 as string)."""
        created = rfc3339(self.created_wall)
        body: dict[str, object] = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.data)),
            "createTime": created,
            "updateTime": created,
            "expirationTime": rfc3339(self.created_wall + FILE_LIFETIME_S),
            "sha256Hash": b64encode(hashlib.sha256(self.data).hexdigest().encode()).decode(),
            "uri": f"{base_url}/v1beta/{self.name}",
            "state": "ACTIVE",
            "source": self.source,
        }
        if self.display_name is not None:
            body["displayName"] = self.display_name
        if self.source == "GENERATED":
            body["downloadUri"] = f"{base_url}/v1beta/{self.name}:download?alt=media"
        return body


class FileStore:
    """Files by name, and upload sessions by id (an upload's URL carries its session id)."""

    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}
        self._uploads: dict[str, StoredFile] = {}

    def clear(self) -> None:
        """Forget every file and open upload (``POST /_sim/reset``)."""
        self._files.clear()
        self._uploads.clear()

    def start_upload(
        self,
        mime_type: str,
        size: int,
        wall: float,
        *,
        name: str | None = None,
        display_name: str | None = None,
    ) -> tuple[str, StoredFile]:
        """Open an upload session (``X-Goog-Upload-Command: start``); its id and its file.
        A name the client chose is kept (``files/`` added), else one is made up."""
        if name is not None and not name.startswith("files/"):
            name = f"files/{name}"
        stored = StoredFile(
            name=name or f"files/{uuid.uuid4().hex[:16]}",
            mime_type=mime_type,
            display_name=display_name,
            created_wall=wall,
            expected_size=size,
        )
        upload_id = uuid.uuid4().hex
        self._uploads[upload_id] = stored
        return upload_id, stored

    def append(self, upload_id: str, offset: int, chunk: bytes, *, finalize: bool) -> StoredFile:
        """Add one chunk at ``offset`` (it must follow the bytes received so far); on
        ``finalize`` the file becomes visible and the session ends. ``UploadError`` otherwise."""
        stored = self._uploads.get(upload_id)
        if stored is None:
            raise UploadError(f"Unknown or finished upload session {upload_id!r}.")
        if offset != len(stored.data):
            raise UploadError(
                f"Upload offset {offset} does not follow the {len(stored.data)} bytes received."
            )
        stored.data.extend(chunk)
        if finalize:
            if stored.expected_size and len(stored.data) != stored.expected_size:
                del self._uploads[upload_id]
                raise UploadError(
                    f"Upload finalized with {len(stored.data)} bytes, {stored.expected_size} were declared."
                )
            del self._uploads[upload_id]
            stored.complete = True
            self._files[stored.name] = stored
        return stored

    def generate(self, name: str, mime_type: str, data: bytes, wall: float) -> StoredFile:
        """Store a file the simulator wrote itself (a batch job's results)."""
        stored = StoredFile(
            name=name,
            mime_type=mime_type,
            display_name=None,
            created_wall=wall,
            source="GENERATED",
            data=bytearray(data),
            complete=True,
        )
        self._files[name] = stored
        return stored

    def get(self, name: str) -> StoredFile | None:
        """The complete file called ``name`` (``files/`` optional), or None."""
        return self._files.get(name if name.startswith("files/") else f"files/{name}")

    def delete(self, name: str) -> bool:
        """Remove a file; False when there was none."""
        return self._files.pop(name if name.startswith("files/") else f"files/{name}", None) is not None

    def files(self) -> list[StoredFile]:
        """Every complete file, newest first."""
        return sorted(self._files.values(), key=lambda f: f.created_wall, reverse=True)

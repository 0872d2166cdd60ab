"""Archival batch jobs: folders of images and videos -> one ``.odc`` per file, resumable.

::

    from onedc_media.archive import EncodeSettings, archive, archive_status

    result = archive("photos/", "photos.odc-archive/", EncodeSettings(codec="onedc",
                     options={"quality": 5}), verify=True)
    print(archive_status("photos.odc-archive/").counts)

Modules: ``manifest`` (the SQLite manifest), ``walk`` (sources and output names),
``layout`` (paths, lock, atomic commits), ``encode`` (the encoder both engines use),
``job`` (scan, plan, run), ``local`` / ``ray_engine`` (engines), ``verify``,
``restore``, ``status``. Importing this package loads neither torch nor Ray.
"""

from onedc_media.archive.encode import VIDEO_MODES, ArchiveEncoder, EncodeSettings, WorkItem
from onedc_media.archive.job import ENGINES, ArchiveResult, Progress, ScanResult, archive
from onedc_media.archive.layout import STATE_DIR, Layout
from onedc_media.archive.manifest import SCHEMA_VERSION, STATUSES, Manifest, ManifestError
from onedc_media.archive.restore import RestoreResult, restore_archive
from onedc_media.archive.status import ArchiveStatus, archive_status, format_status
from onedc_media.archive.verify import VerifyResult, verify_archive

__all__ = [
    "ENGINES",
    "SCHEMA_VERSION",
    "STATE_DIR",
    "STATUSES",
    "VIDEO_MODES",
    "ArchiveEncoder",
    "ArchiveResult",
    "ArchiveStatus",
    "EncodeSettings",
    "Layout",
    "Manifest",
    "ManifestError",
    "Progress",
    "RestoreResult",
    "ScanResult",
    "VerifyResult",
    "WorkItem",
    "archive",
    "archive_status",
    "format_status",
    "restore_archive",
    "verify_archive",
]

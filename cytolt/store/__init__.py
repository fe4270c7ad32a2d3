"""Detection store of a screening run (SQLite + R-tree) and its exports (QuPath GeoJSON, CSV, COCO results)."""

from cytolt.store.export import to_coco_results, to_csv, to_geojson
from cytolt.store.geojson import check_qupath_geojson
from cytolt.store.run_folder import RunFolder
from cytolt.store.store import DECISIONS, SLIDE_STATUSES, DetectionStore, Review, SlideRecord, detection_keys

__all__ = [
    "DECISIONS",
    "SLIDE_STATUSES",
    "DetectionStore",
    "Review",
    "RunFolder",
    "SlideRecord",
    "check_qupath_geojson",
    "detection_keys",
    "to_coco_results",
    "to_csv",
    "to_geojson",
]

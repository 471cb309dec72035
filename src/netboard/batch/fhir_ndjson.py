"""FHIR Bulk Data NDJSON -> registry rows, with the service's mapping (``case_from_fhir``).

A Bulk Data export directory holds one resource per line in files named by type
(``Patient.ndjson``, ``Observation.000.ndjson``, ...). Every ``*.ndjson`` file is read; the
resource type is taken from each line, not from the file name.

Memory: two passes. Pass 1 streams every file once and appends each line, unchanged, to one of
``B`` bucket files in a temporary directory, chosen by a hash of the patient id (the subject or
patient reference; a Patient's own id). ``B`` is chosen so that a bucket holds about 64 MB of
resources. Pass 2 reads one bucket at a time, groups its resources by patient and runs
``case_from_fhir`` for each patient. So the memory held is one bucket (plus the Medication
resources, which have no subject and are kept in a dictionary by id: they are few), whatever the
size of the export; the temporary space is the size of the export.

Bad lines (not JSON, not a resource, a clinical resource without a patient reference) are
reported as ``FILE:LINE: ...`` and left out; the export is still read. Resources that are not
patient data (Practitioner, Organization, Location, Group and any other type without a patient
subject that netboard does not read) and Bulk Data log files (``log.ndjson``) are counted in
``FhirStats.not_patient_data``, not reported as problems.

The NEN gate: a patient whose record shows no neuroendocrine neoplasm (no neoplasm, or a cancer
that is not neuroendocrine) is not audited; it is counted in ``FhirStats.out_of_scope`` by what
the record shows. A patient with a neoplasm at a NEN site but no neuroendocrine histology is
audited as a presumed NEN and counted in ``FhirStats.presumed``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netboard.batch.io import Chunk, RegistryError, check_row, input_schema, layout_row
from netboard.errors import Problem
from netboard.fhir import case_from_fhir
from netboard.fhir import elements as el
from netboard.fhir.table import FHIR_RESOURCE_TYPES
from netboard.kb import KnowledgeBase

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "BUCKET_BYTES",
    "FhirStats",
    "check_export",
    "fhir_ndjson_chunks",
    "fhir_ndjson_rows",
    "remove_stale_buckets",
]

#: Target size of one pass-2 bucket.
BUCKET_BYTES = 64 << 20
#: At most this many bucket files are open at once (beyond 32 GB, buckets grow past 64 MB).
MAX_BUCKETS = 512


@dataclass(slots=True)
class FhirStats:
    """What reading the export found: files, lines, patients and the items not used."""

    files: int = 0
    lines: int = 0
    bad_lines: int = 0
    patients: int = 0
    unmapped: int = 0
    unmapped_by_reason: dict[str, int] = field(default_factory=dict)
    #: lines that are not patient data, by resource type (``log`` for a Bulk Data log file)
    not_patient_data: dict[str, int] = field(default_factory=dict)
    #: patients not audited, by what the record says about the neoplasm (none, ...)
    out_of_scope: dict[str, int] = field(default_factory=dict)
    #: patients audited as presumed NENs (a neoplasm at a NEN site, no NE histology)
    presumed: int = 0


def check_export(directory: str | Path) -> list[Path]:
    """The ``.ndjson`` files of an export directory, checked before anything is written.

    Raises:
        RegistryError: not a directory, or no ``.ndjson`` file in it.
    """
    return _files(Path(directory))


#: Temporary bucket directories are named after the process: ``netboard-fhir-PID-XXXX``.
TMP_PREFIX = "netboard-fhir-"
_TMP_PID = re.compile(r"^netboard-fhir-(\d+)-")


def remove_stale_buckets(folder: str | Path | None = None) -> list[Path]:
    """Remove bucket directories left in the temporary folder by killed runs (SIGKILL)."""
    from netboard.batch.outputs import remove_stale

    root = Path(folder if folder is not None else tempfile.gettempdir())
    return remove_stale(root, f"{TMP_PREFIX}*", _TMP_PID)


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise RegistryError([Problem(str(directory), "not a directory (a Bulk Data export)")])
    found = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".ndjson" and p.is_file())
    if not [p for p in found if not _is_log(p)]:
        raise RegistryError([Problem(str(directory), "no .ndjson file in this directory")])
    return found


def _is_log(path: Path) -> bool:
    """A Bulk Data log file (``log.ndjson``): export progress, not patient data."""
    return path.stem.lower() == "log"


def _patient_of(res: Mapping[str, Any]) -> str | None:
    if res.get("resourceType") == "Patient":
        return el.text(res.get("id"))
    for key in ("subject", "patient"):
        if key in res:
            kind, target = el.ref_target(res.get(key))
            if target is not None and kind in (None, "Patient"):
                return target
            return None
    return None


def _bucket(pid: str, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(pid.encode(), digest_size=4).digest(), "big") % buckets


def fhir_ndjson_rows(
    directory: str | Path,
    *,
    kb: KnowledgeBase,
    today: dt.date | None = None,
    on_problem: Callable[[str], None] | None = None,
    stats: FhirStats | None = None,
    bucket_bytes: int = BUCKET_BYTES,
) -> Iterator[dict[str, Any]]:
    """Registry rows (input layout, no ``given``), one per patient of a Bulk Data export.

    Rows come bucket by bucket, patients sorted by id within a bucket.

    Raises:
        RegistryError: the directory is missing or holds no ``.ndjson`` file.
    """
    root = Path(directory)
    files = _files(root)
    st = stats if stats is not None else FhirStats()
    st.files = len(files)
    report = on_problem or (lambda _line: None)
    total = sum(p.stat().st_size for p in files)
    buckets = min(MAX_BUCKETS, max(1, -(-total // bucket_bytes)))
    medications: dict[str, dict[str, Any]] = {}
    remove_stale_buckets()
    # Removed on return, on an exception, on SIGTERM/SIGHUP/Ctrl-C (``netboard.batch.outputs``
    # turns them into exceptions) and when the generator is closed; after SIGKILL, by the next
    # run's ``remove_stale_buckets``.
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-") as tmp:
        with contextlib.ExitStack() as stack:
            outs = [
                stack.enter_context(Path(tmp, f"bucket-{i:05d}.ndjson").open("w", encoding="utf-8"))
                for i in range(buckets)
            ]
            for path in files:
                if _is_log(path):
                    st.not_patient_data["log"] = st.not_patient_data.get("log", 0) + 1
                    continue
                with path.open(encoding="utf-8-sig") as fh:
                    for number, line in enumerate(fh, start=1):
                        if not line.strip():
                            continue
                        st.lines += 1
                        where = f"{path.name}:{number}"
                        try:
                            res = json.loads(line)
                        except ValueError as exc:
                            st.bad_lines += 1
                            report(f"{where}: not valid JSON: {exc}")
                            continue
                        if not isinstance(res, dict) or not isinstance(
                            res.get("resourceType"), str
                        ):
                            st.bad_lines += 1
                            report(f"{where}: not a FHIR resource (no resourceType)")
                            continue
                        if res["resourceType"] == "Medication":
                            mid = el.text(res.get("id"))
                            if mid:
                                medications[mid] = res
                            continue
                        pid = _patient_of(res)
                        rtype = str(res["resourceType"])
                        if pid is None and (
                            rtype not in FHIR_RESOURCE_TYPES or rtype == "OperationOutcome"
                        ):
                            st.not_patient_data[rtype] = st.not_patient_data.get(rtype, 0) + 1
                            continue
                        if pid is None:
                            st.bad_lines += 1
                            report(
                                f"{where}: {res['resourceType']} without a Patient subject "
                                "(no patient to file it under)"
                            )
                            continue
                        outs[_bucket(pid, buckets)].write(pid + "\t" + line.rstrip("\n") + "\n")
        for i in range(buckets):
            yield from _bucket_rows(Path(tmp, f"bucket-{i:05d}.ndjson"), medications, kb, today, st)


def _bucket_rows(
    path: Path,
    medications: Mapping[str, dict[str, Any]],
    kb: KnowledgeBase,
    today: dt.date | None,
    st: FhirStats,
) -> Iterator[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            pid, _, text = line.partition("\t")
            groups.setdefault(pid, []).append(json.loads(text))
    os.unlink(path)
    for pid in sorted(groups):
        resources = groups.pop(pid)
        used = {
            target
            for r in resources
            for target in [el.ref_target(r.get("medicationReference"))[1]]
            if target is not None
        }
        resources.extend(medications[m] for m in sorted(used) if m in medications)
        read = case_from_fhir(resources, kb=kb, today=today, patient_id=pid)
        st.patients += 1
        if not read.answers:
            kind = read.neoplasm.value
            st.out_of_scope[kind] = st.out_of_scope.get(kind, 0) + 1
            continue
        if read.neoplasm.value == "unconfirmed":
            st.presumed += 1
        for u in read.unmapped:
            st.unmapped += 1
            st.unmapped_by_reason[u.reason] = st.unmapped_by_reason.get(u.reason, 0) + 1
        case_map = dict(read.case)
        case_map.setdefault("id", pid)  # the patient's id from its references
        flat: dict[str, Any] = {k: x for k, x in case_map.items() if k != "labs"}
        for name, value in (case_map.get("labs") or {}).items():
            flat[f"labs.{name}"] = value
        case, problems = check_row(flat)
        if case is None:  # the mapping validates; this would be a bug, not bad input
            raise RegistryError([Problem(f"Patient/{pid}", str(p)) for p in problems])
        yield layout_row(case)


def fhir_ndjson_chunks(
    directory: str | Path,
    *,
    kb: KnowledgeBase,
    today: dt.date | None = None,
    on_problem: Callable[[str], None] | None = None,
    stats: FhirStats | None = None,
    chunk_rows: int = 10_000,
) -> Iterator[Chunk]:
    """The export as audit chunks (input layout without ``given``)."""
    import pyarrow as pa

    schema = input_schema(False)
    rows: list[dict[str, Any]] = []

    def flush() -> Chunk:
        table: pa.Table = pa.Table.from_pylist(
            [{k: x for k, x in r.items() if k != "given"} for r in rows], schema=schema
        )
        rows.clear()
        return Chunk(table, [], table.num_rows, 0)

    for row in fhir_ndjson_rows(directory, kb=kb, today=today, on_problem=on_problem, stats=stats):
        rows.append(row)
        if len(rows) >= chunk_rows:
            yield flush()
    if rows:
        yield flush()

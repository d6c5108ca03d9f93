"""Receiving a model bundle over MQTT: offers and chunks in, progress out (docs/flashing.md).

Sans-I/O with respect to the network: the runtime hands over the payloads it received on
``model/offer`` and ``model/chunk`` and publishes the bytes it gets back on ``model/progress``.
Files are its business (chunks persist so a transfer resumes); sockets and threads are not.
It is called from one thread (the runtime's), so it holds no locks.

Rules
-----

1. **Check the offer before writing anything.** Protocol version, transfer id, chunk size,
   file names (plain names only: no separator, no ``..``, no leading dot), file count, total
   size against ``max_bytes``, free disk, ``manifest.json`` and ``manifest.sig`` present. A
   refusal is a ``refused`` progress payload naming the rule, never an exception.
2. **Key by content, not by transfer.** The incoming directory is named by a digest of the
   offered files and the chunk size (`Offer.key`), so the same bundle offered again with a new
   transfer id, or after an edge restart, resumes with the chunks already on disk.
3. **A chunk is taken only whole and verified**: magic, a known transfer id, index in range, the
   exact length the index implies, sha256 of the data. Anything else is counted and ignored,
   never fatal. Each chunk is written to a temporary file and renamed, so a half-written chunk
   is never taken for a whole one. No fsync per chunk (an SD card would suffer); damage from a
   power cut is caught at reassembly (rule 5) and the chunks are fetched again.
4. **Report now and then, not per chunk**: after every ``ack_every`` chunk messages of a
   transfer (the sender's window depends on it), when the last chunk arrives (``complete``),
   and once per stall (`poll`: ``incomplete`` with the missing ranges).
5. **Reassemble and verify before handing over** (`completed`): every file's size and sha256
   against the offer, then the manifest's file list against the offer. A mismatching file's
   chunks are dropped and reported missing again (``incomplete``); nothing incomplete or
   unverified is ever returned for installation.
6. **Bounded disk**: one incoming bundle at a time (a new bundle while another is active is
   refused as busy; an idle one is replaced), each at most ``max_bytes``; deleted once the
   install is answered (`result`); directories untouched for ``max_age_s`` are deleted at
   construction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from edge.payloads import iso_utc

__all__ = [
    "CHUNK_HEADER",
    "CHUNK_LEAF",
    "CHUNK_MAGIC",
    "DEFAULT_ACK_EVERY",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_BYTES",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "OFFER_LEAF",
    "PROGRESS_LEAF",
    "PROTOCOL",
    "REQUIRED_FILES",
    "STATES",
    "Chunk",
    "ChunkError",
    "Offer",
    "OfferError",
    "OfferFile",
    "ReceiverCounters",
    "TransferError",
    "TransferIncompleteError",
    "TransferReceiver",
    "TransferRefusedError",
    "UnknownTransferError",
    "check_name",
    "decode_chunk",
    "encode_chunk",
    "expand_ranges",
    "to_ranges",
]

_log = logging.getLogger(__name__)

PROTOCOL: Final = 1
OFFER_LEAF: Final = "model/offer"
CHUNK_LEAF: Final = "model/chunk"
PROGRESS_LEAF: Final = "model/progress"
"""Topic leaves under ``<prefix>/<device>/``; all QoS 1, never retained."""

CHUNK_MAGIC: Final = b"VGC\x01"
CHUNK_HEADER: Final = struct.Struct(">4s16sI32s")
"""Magic + format version, transfer id (16 raw bytes), chunk index (u32), sha256 of the data."""

DEFAULT_CHUNK_SIZE: Final = 32 * 1024
"""32 KiB: a small buffer on a Pi, a cheap resend, 0.2 % header overhead (docs/flashing.md)."""
MIN_CHUNK_SIZE: Final = 4 * 1024
MAX_CHUNK_SIZE: Final = 256 * 1024
DEFAULT_ACK_EVERY: Final = 8
MAX_ACK_EVERY: Final = 64
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
"""64 MiB: eight times the largest bundle we train, small next to a Pi's SD card."""
DEFAULT_MAX_FILES: Final = 64
DEFAULT_STALL_S: Final = 30.0
DAY_S: Final = 86_400.0
DISK_COPIES: Final = 3
"""Free disk an offer needs, in bundle sizes: chunks, reassembled files, the store's staging."""
REQUIRED_FILES: Final = ("manifest.json", "manifest.sig")
STATES: Final = ("receiving", "incomplete", "complete", "installing", "installed", "refused")

_MANIFEST, _SIGNATURE = REQUIRED_FILES
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HEX_RE: Final = re.compile(r"[0-9a-f]+")
_TRANSFER_HEX: Final = 32
_SHA_HEX: Final = 64
_OFFER_FILE: Final = "offer.json"
_CHUNKS: Final = "chunks"
_BUNDLE: Final = "bundle"
_KEY_HEX: Final = 24
_KEEP_TRANSFER_IDS: Final = 8
_KEEP_RESULTS: Final = 16
_COPY_BYTES: Final = 1 << 20


# --------------------------------------------------------------------------------------------
# Wire format, shared with the sender (training/flash.py)


class ChunkError(ValueError):
    """A chunk message that is not one (too short, wrong magic, hash mismatch)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A decoded chunk message; ``sha256`` is the digest the header claims for ``data``."""

    transfer_id: str
    index: int
    sha256: bytes
    data: bytes


def encode_chunk(transfer_id: str, index: int, data: bytes, sha256: bytes | None = None) -> bytes:
    """The chunk message (header + data); ``sha256`` when already known (the sender caches it)."""
    digest = hashlib.sha256(data).digest() if sha256 is None else sha256
    return CHUNK_HEADER.pack(CHUNK_MAGIC, bytes.fromhex(transfer_id), index, digest) + data


def decode_chunk(payload: bytes) -> Chunk:
    """Parse a chunk message and check its data against its hash; ChunkError says what failed."""
    if len(payload) < CHUNK_HEADER.size:
        raise ChunkError(f"{len(payload)} bytes, shorter than the {CHUNK_HEADER.size}-byte header")
    magic, tid, index, digest = CHUNK_HEADER.unpack_from(payload)
    if magic != CHUNK_MAGIC:
        raise ChunkError(f"magic {magic!r}, expected {CHUNK_MAGIC!r}")
    data = bytes(payload[CHUNK_HEADER.size:])
    if hashlib.sha256(data).digest() != digest:
        raise ChunkError(f"chunk {index}: sha256 of the data differs from its header")
    return Chunk(tid.hex(), index, digest, data)


def to_ranges(indices: Iterable[int]) -> list[list[int]]:
    """Sorted indices as inclusive ``[first, last]`` ranges: 0,1,2,5 -> [[0, 2], [5, 5]]."""
    out: list[list[int]] = []
    for i in sorted(set(indices)):
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def expand_ranges(ranges: Any, limit: int) -> set[int]:
    """The indices of ``[first, last]`` ranges, each below ``limit``; ValueError otherwise.

    Used on payloads from the network, so every range is checked before it is expanded.
    """
    if not isinstance(ranges, list):
        raise ValueError("missing: not a list")
    out: set[int] = set()
    for r in ranges:
        if (not isinstance(r, list) or len(r) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in r)
                or not 0 <= r[0] <= r[1] < limit):
            raise ValueError(f"missing: bad range {r!r} (chunks 0..{limit - 1})")
        out.update(range(r[0], r[1] + 1))
    return out


class OfferError(ValueError):
    """An offer the device refuses; the message is the reason sent back."""


@dataclass(frozen=True, slots=True)
class OfferFile:
    """One file of an offered bundle."""

    name: str
    size: int
    sha256: str


def check_name(name: str) -> str | None:
    """Why ``name`` is not a plain file name the device accepts, or None when it is."""
    if not _NAME_RE.fullmatch(name):
        return (f"file name {name!r}: only a plain name (letters, digits, '.', '_', '-', "
                "at most 128, not starting with '.') is accepted, no path")
    if ".." in name:
        return f"file name {name!r}: '..' is not accepted"
    return None


@dataclass(frozen=True, slots=True)
class Offer:
    """A bundle offered for transfer (docs/flashing.md, "Offer")."""

    transfer_id: str
    version: str
    chunk_size: int
    files: tuple[OfferFile, ...]
    ack_every: int = DEFAULT_ACK_EVERY

    @property
    def total_bytes(self) -> int:
        """Length of the byte stream: the files concatenated in offer order."""
        return sum(f.size for f in self.files)

    @property
    def chunks(self) -> int:
        """Number of chunks of the stream."""
        return math.ceil(self.total_bytes / self.chunk_size)

    def chunk_length(self, index: int) -> int:
        """Bytes of data chunk ``index`` carries (the last one may be short)."""
        return min(self.chunk_size, self.total_bytes - index * self.chunk_size)

    @property
    def key(self) -> str:
        """Content key (rule 2): the same files cut the same way resume whatever the transfer."""
        body = [self.chunk_size, [[f.name, f.size, f.sha256] for f in self.files]]
        text = json.dumps(body, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_KEY_HEX]

    def to_dict(self) -> dict[str, Any]:
        """The offer as JSON-ready data (also what the device keeps in ``offer.json``)."""
        return {
            "protocol": PROTOCOL, "transfer": self.transfer_id, "version": self.version,
            "chunk_size": self.chunk_size, "ack_every": self.ack_every,
            "total_bytes": self.total_bytes, "chunks": self.chunks,
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in self.files],
        }

    def to_json(self, sent: float | None = None) -> bytes:
        """The offer message; ``sent`` (Unix s) is the sender's time, informative only."""
        body = self.to_dict()
        if sent is not None:
            body["sent"] = iso_utc(sent)
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    @classmethod
    def parse(
        cls, payload: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES,
        max_files: int = DEFAULT_MAX_FILES,
    ) -> Offer:
        """Check an offer message (rule 1, except disk and busy); OfferError names the rule."""
        try:
            raw = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise OfferError(f"offer is not JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise OfferError("offer is not a JSON object")
        if raw.get("protocol") != PROTOCOL:
            raise OfferError(f"protocol {raw.get('protocol')!r}: this device speaks {PROTOCOL}")
        tid = raw.get("transfer")
        if not isinstance(tid, str) or len(tid) != _TRANSFER_HEX or not _HEX_RE.fullmatch(tid):
            raise OfferError("transfer: expected 32 lowercase hex digits")
        version = raw.get("version")
        if not isinstance(version, str) or not version:
            raise OfferError("version: expected a non-empty string")
        chunk_size = _int(raw, "chunk_size", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)
        ack_every = _int(raw, "ack_every", 1, MAX_ACK_EVERY, default=DEFAULT_ACK_EVERY)
        files = _parse_files(raw.get("files"), max_bytes=max_bytes, max_files=max_files)
        offer = cls(tid, version, chunk_size, tuple(files), ack_every)
        if offer.total_bytes == 0:
            raise OfferError("the offered files are empty")
        if offer.total_bytes > max_bytes:
            raise OfferError(f"{offer.total_bytes} bytes: this device accepts at most "
                             f"{max_bytes} ({max_bytes / 2**20:g} MiB)")
        for key, want in (("total_bytes", offer.total_bytes), ("chunks", offer.chunks)):
            if key in raw and raw[key] != want:
                raise OfferError(f"{key} {raw[key]!r} disagrees with the file list ({want})")
        return offer


def _parse_files(listed: Any, *, max_bytes: int, max_files: int) -> list[OfferFile]:
    """The offer's ``files``: plain unique names, sizes, digests, the required files."""
    if not isinstance(listed, list) or not listed:
        raise OfferError("files: expected a non-empty list")
    if len(listed) > max_files:
        raise OfferError(f"{len(listed)} files: at most {max_files} are accepted")
    files: list[OfferFile] = []
    for entry in listed:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise OfferError("files: every entry must be an object with a name")
        name = entry["name"]
        if (why := check_name(name)) is not None:
            raise OfferError(why)
        size = _int(entry, "size", 0, max_bytes, where=f"files.{name}.")
        sha = entry.get("sha256")
        if not isinstance(sha, str) or len(sha) != _SHA_HEX or not _HEX_RE.fullmatch(sha):
            raise OfferError(f"files.{name}.sha256: expected 64 lowercase hex digits")
        files.append(OfferFile(name, size, sha))
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise OfferError("files: a name is listed twice")
    for required in REQUIRED_FILES:
        if required not in names:
            why = "unsigned bundles are never installed" if required == _SIGNATURE \
                else "it is what the bundle is"
            raise OfferError(f"{required} is not offered: {why}")
    return files


def _int(
    raw: dict[str, Any], key: str, low: int, high: int, *, default: int | None = None,
    where: str = "",
) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise OfferError(f"{where}{key} {value!r}: expected an integer in {low}..{high}")
    return value


# --------------------------------------------------------------------------------------------
# Refusals raised by `TransferReceiver.completed`


class TransferError(Exception):
    """A transfer that cannot be handed over for installation.

    ``progress`` is the payload to publish on ``model/progress`` about it (the reason, and for
    an incomplete transfer the missing ranges), so the caller need not build one.
    """

    def __init__(self, transfer_id: str, reason: str, progress: bytes) -> None:
        super().__init__(reason)
        self.transfer_id = transfer_id
        self.reason = reason
        self.progress = progress


class UnknownTransferError(TransferError):
    """No transfer with this id was offered (or it already ended)."""


class TransferIncompleteError(TransferError):
    """Chunks are missing (never arrived, or dropped after a file failed its check)."""

    def __init__(self, transfer_id: str, reason: str, progress: bytes,
                 missing: Sequence[Sequence[int]]) -> None:
        super().__init__(transfer_id, reason, progress)
        self.missing = [list(r) for r in missing]


class TransferRefusedError(TransferError):
    """Complete, but its files do not match the manifest: it will not be installed."""


# --------------------------------------------------------------------------------------------
# The receiver


@dataclass(slots=True)
class _Incoming:
    """One bundle being received (rule 2: one directory per content key)."""

    offer: Offer
    root: Path
    have: set[int]
    transfer_ids: list[str]
    last_activity: float
    live: bool = False
    """Offered in this process (a directory reloaded after a restart is not, until re-offered)."""
    last: int | None = None
    since_report: int = 0
    bad: int = 0
    duplicates: int = 0
    stall_reported: bool = False
    assembled: bool = False
    handed: bool = False
    """Returned by `TransferReceiver.ready` and not yet answered with `result`."""

    @property
    def chunk_dir(self) -> Path:
        return self.root / _CHUNKS

    @property
    def complete(self) -> bool:
        return len(self.have) == self.offer.chunks

    def missing(self) -> list[int]:
        return [i for i in range(self.offer.chunks) if i not in self.have]

    def received_bytes(self) -> int:
        return sum(self.offer.chunk_length(i) for i in self.have)


@dataclass(slots=True)
class ReceiverCounters:
    """For the status: undecodable chunks, chunks of unknown transfers, offers taken/refused."""

    malformed_chunks: int = 0
    unknown_chunks: int = 0
    offers_refused: int = 0
    offers_accepted: int = 0
    stale_removed: int = 0


def _disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


class TransferReceiver:
    """The device side of docs/flashing.md (module rules). One thread only."""

    def __init__(
        self, incoming_dir: str | Path, *, device: str = "",
        max_bytes: int = DEFAULT_MAX_BYTES, max_files: int = DEFAULT_MAX_FILES,
        stall_s: float = DEFAULT_STALL_S, max_age_s: float = DAY_S,
        clock: Callable[[], float] = time.time,
        disk_free: Callable[[Path], int] = _disk_free,
    ) -> None:
        """``clock``: Unix seconds (compared with directory mtimes for ``max_age_s``);
        ``disk_free``: free bytes of a directory's file system (tests replace it)."""
        if max_bytes <= 0 or max_files <= 0 or stall_s <= 0 or max_age_s <= 0:
            raise ValueError("max_bytes, max_files, stall_s and max_age_s must be positive")
        self.root = Path(incoming_dir).expanduser()
        self.device = device
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.stall_s = stall_s
        self.max_age_s = max_age_s
        self._clock = clock
        self._disk_free = disk_free
        self.counters = ReceiverCounters()
        self._by_key: dict[str, _Incoming] = {}
        self._by_tid: dict[str, _Incoming] = {}
        self._ready: list[str] = []
        self._results: OrderedDict[str, bytes] = OrderedDict()
        self.root.mkdir(parents=True, exist_ok=True)
        self._load()

    # -- start-up (rules 2 and 6) ------------------------------------------------------------

    def _load(self) -> None:
        now = self._clock()
        for path in sorted(self.root.iterdir()):
            if not path.is_dir():
                path.unlink(missing_ok=True)
                continue
            chunks = path / _CHUNKS  # written to by every chunk; the top only by offers
            touched = max(path.stat().st_mtime,
                          chunks.stat().st_mtime if chunks.is_dir() else 0.0)
            if now - touched > self.max_age_s:
                _log.info("removing incoming bundle %s: untouched for over %g s", path.name,
                          self.max_age_s)
                self.counters.stale_removed += 1
                shutil.rmtree(path, ignore_errors=True)
                continue
            try:
                inc = self._reload(path, now)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _log.warning("removing unreadable incoming bundle %s (%s)", path.name, exc)
                shutil.rmtree(path, ignore_errors=True)
                continue
            self._register(inc)
            _log.info("incoming bundle %s (%s): %d of %d chunks on disk", path.name,
                      inc.offer.version, len(inc.have), inc.offer.chunks)

    def _reload(self, path: Path, now: float) -> _Incoming:
        raw = json.loads((path / _OFFER_FILE).read_bytes())
        offer = Offer.parse(json.dumps(raw["offer"]).encode("utf-8"), max_bytes=self.max_bytes,
                            max_files=self.max_files)
        if offer.key != path.name:
            raise ValueError(f"offer.json describes {offer.key}, not {path.name}")
        tids = [str(t) for t in raw["transfers"]]
        shutil.rmtree(path / _BUNDLE, ignore_errors=True)  # a reassembly cut short
        have: set[int] = set()
        chunk_dir = path / _CHUNKS
        chunk_dir.mkdir(exist_ok=True)
        for f in chunk_dir.iterdir():
            index = int(f.name) if f.name.isdigit() else -1
            if 0 <= index < offer.chunks and f.stat().st_size == offer.chunk_length(index):
                have.add(index)
            else:  # a temporary file or a chunk cut by a power cut
                f.unlink(missing_ok=True)
        # Idle from the start (rule 6): nobody may be sending to it any more.
        return _Incoming(offer, path, have, tids, last_activity=now - self.stall_s)

    def _register(self, inc: _Incoming) -> None:
        self._by_key[inc.offer.key] = inc
        for tid in inc.transfer_ids:
            self._by_tid[tid] = inc

    def _drop(self, inc: _Incoming) -> None:
        self._by_key.pop(inc.offer.key, None)
        for tid in inc.transfer_ids:
            if self._by_tid.get(tid) is inc:
                del self._by_tid[tid]
        self._ready = [t for t in self._ready if self._by_tid.get(t) is not None]
        shutil.rmtree(inc.root, ignore_errors=True)

    def _save_offer(self, inc: _Incoming) -> None:
        body = {"offer": inc.offer.to_dict(), "transfers": inc.transfer_ids}
        tmp = inc.root / f".{_OFFER_FILE}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(body), encoding="utf-8")
        tmp.replace(inc.root / _OFFER_FILE)

    # -- offers (rule 1) ---------------------------------------------------------------------

    def offer(self, payload: bytes) -> bytes:
        """Answer an offer: the progress payload to publish (what is missing, or refused)."""
        try:
            offer = Offer.parse(payload, max_bytes=self.max_bytes, max_files=self.max_files)
        except OfferError as exc:
            return self._refuse_offer(payload, str(exc))
        if offer.transfer_id in self._results:  # the sender asks again after the end
            return self._results[offer.transfer_id]
        now = self._clock()
        inc = self._admit(offer, now)
        if isinstance(inc, str):
            return self._refuse_offer(payload, inc)
        inc.live = True
        inc.last_activity = now
        inc.stall_reported = False
        inc.last = None
        inc.since_report = 0
        self.counters.offers_accepted += 1
        if inc.complete:
            if not inc.handed and offer.transfer_id not in self._ready:
                self._ready.append(offer.transfer_id)
            _log.info("offer %s of %s: every chunk already here", offer.transfer_id,
                      offer.version)
            return self._progress(inc, offer.transfer_id, "complete")
        _log.info("offer %s of %s accepted: %d bytes, %d of %d chunks to receive",
                  offer.transfer_id, offer.version, offer.total_bytes,
                  offer.chunks - len(inc.have), offer.chunks)
        return self._progress(inc, offer.transfer_id, "receiving")

    def _admit(self, offer: Offer, now: float) -> _Incoming | str:
        """The incoming bundle this offer resumes or starts, or why it is refused (rules 1, 6)."""
        known = self._by_tid.get(offer.transfer_id)
        if known is not None and known.offer.key != offer.key:
            return "transfer id already used for another bundle"
        inc = self._by_key.get(offer.key)
        if inc is None:
            for other in list(self._by_key.values()):
                if now - other.last_activity < self.stall_s or other.handed:
                    return (f"busy: receiving bundle {other.offer.version} ({len(other.have)} "
                            f"of {other.offer.chunks} chunks); try again later")
                _log.info("replacing idle incoming bundle %s with %s", other.offer.version,
                          offer.version)
                self._drop(other)
            free = self._disk_free(self.root)
            if free < DISK_COPIES * offer.total_bytes:
                return (f"not enough disk: {free} bytes free, {DISK_COPIES} x "
                        f"{offer.total_bytes} needed (chunks, reassembly, staging)")
            root = self.root / offer.key
            try:
                (root / _CHUNKS).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                return f"cannot create {root}: {exc}"
            inc = _Incoming(offer, root, set(), [], last_activity=now)
        else:
            inc.offer = offer  # same content (same key); this sender's id and reporting cadence
        if offer.transfer_id not in inc.transfer_ids:
            inc.transfer_ids = [*inc.transfer_ids, offer.transfer_id][-_KEEP_TRANSFER_IDS:]
        self._register(inc)
        try:
            self._save_offer(inc)
        except OSError as exc:
            self._drop(inc)
            return f"cannot write {_OFFER_FILE}: {exc}"
        return inc

    def _refuse_offer(self, payload: bytes, reason: str) -> bytes:
        self.counters.offers_refused += 1
        tid, version = "", ""
        try:
            raw = json.loads(payload)
            if isinstance(raw, dict):
                tid = str(raw.get("transfer", ""))[:_TRANSFER_HEX]
                version = str(raw.get("version", ""))[:128]
        except (ValueError, UnicodeDecodeError):
            pass
        _log.warning("offer %s of %s refused: %s", tid or "?", version or "?", reason)
        return self._payload({
            "transfer": tid, "version": version, "state": "refused", "received": 0,
            "chunks": 0, "bytes": 0, "total_bytes": 0, "missing": [], "last": None,
            "bad_chunks": 0, "reason": reason, "version_before": None, "version_after": None,
        })

    # -- chunks (rules 3 and 4) --------------------------------------------------------------

    def chunk(self, payload: bytes) -> bytes | None:
        """Take a chunk message; a progress payload to publish now and then (rule 4), else None.

        Never raises for what arrives: a malformed chunk, one of an unknown transfer, out of
        range or of the wrong length is counted and ignored.
        """
        try:
            c = decode_chunk(payload)
        except ChunkError as exc:
            self.counters.malformed_chunks += 1
            _log.debug("chunk ignored: %s", exc)
            return self._bad_chunk(_peek_transfer(payload))
        inc = self._by_tid.get(c.transfer_id)
        if inc is None:
            self.counters.unknown_chunks += 1
            _log.debug("chunk %d of unknown transfer %s ignored", c.index, c.transfer_id)
            return None
        if c.index >= inc.offer.chunks or len(c.data) != inc.offer.chunk_length(c.index):
            return self._bad_chunk(c.transfer_id)
        inc.last = c.index
        inc.last_activity = self._clock()
        inc.stall_reported = False
        if c.index in inc.have:
            inc.duplicates += 1
        else:
            try:
                _write_atomic(inc.chunk_dir / f"{c.index:06d}", c.data)
            except OSError as exc:
                _log.error("cannot store chunk %d of %s: %s", c.index, inc.offer.version, exc)
                reason = f"cannot store chunk {c.index}: {exc}"
                payload_out = self._progress(inc, c.transfer_id, "refused", reason=reason)
                self._drop(inc)
                return payload_out
            inc.have.add(c.index)
            if inc.complete:
                return self._on_complete(inc, c.transfer_id)
        return self._count(inc, c.transfer_id)

    def _bad_chunk(self, tid: str | None) -> bytes | None:
        inc = self._by_tid.get(tid) if tid else None
        if inc is None:
            return None
        inc.bad += 1
        return self._count(inc, tid or "")

    def _count(self, inc: _Incoming, tid: str) -> bytes | None:
        inc.since_report += 1
        if inc.since_report < inc.offer.ack_every:
            return None
        inc.since_report = 0
        return self._progress(inc, tid, "complete" if inc.complete else "receiving")

    def _on_complete(self, inc: _Incoming, tid: str) -> bytes:
        inc.since_report = 0
        if not inc.handed and tid not in self._ready:
            self._ready.append(tid)
        _log.info("bundle %s: all %d chunks received (%d bad, %d duplicates)",
                  inc.offer.version, inc.offer.chunks, inc.bad, inc.duplicates)
        return self._progress(inc, tid, "complete")

    def poll(self) -> list[bytes]:
        """Call now and then (each second is plenty): an ``incomplete`` report, once, for each
        live transfer that has received nothing for ``stall_s`` while chunks are missing."""
        now = self._clock()
        out: list[bytes] = []
        for inc in self._by_key.values():
            if (inc.live and not inc.complete and not inc.stall_reported
                    and now - inc.last_activity >= self.stall_s):
                inc.stall_reported = True
                tid = inc.transfer_ids[-1]
                missing = len(inc.missing())
                _log.warning("bundle %s stalled: %d chunks missing", inc.offer.version, missing)
                out.append(self._progress(
                    inc, tid, "incomplete",
                    reason=f"stalled: nothing received for {self.stall_s:g} s, "
                           f"{missing} chunks missing"))
        return out

    # -- handing over (rule 5) ---------------------------------------------------------------

    def ready(self) -> list[str]:
        """Transfer ids whose chunks are all in and not yet handed over, each returned once:
        call `completed` on each, install, then `result`."""
        out, self._ready = self._ready, []
        for tid in out:
            inc = self._by_tid.get(tid)
            if inc is not None:
                inc.handed = True
        return [t for t in out if t in self._by_tid]

    def completed(self, transfer_id: str) -> Path:
        """The reassembled bundle directory, every file checked against the offer and the
        manifest (rule 5). Raises `TransferIncompleteError` (missing ranges), `TransferRefusedError`
        or `UnknownTransferError`, each carrying the progress payload to publish."""
        inc = self._by_tid.get(transfer_id)
        if inc is None:
            raise UnknownTransferError(transfer_id, f"no transfer {transfer_id}", self._payload({
                "transfer": transfer_id, "version": "", "state": "refused", "received": 0,
                "chunks": 0, "bytes": 0, "total_bytes": 0, "missing": [], "last": None,
                "bad_chunks": 0, "reason": "unknown transfer", "version_before": None,
                "version_after": None}))
        out = inc.root / _BUNDLE
        if inc.assembled:
            return out
        if not inc.complete:
            inc.handed = False
            missing = inc.missing()
            reason = f"incomplete: {len(missing)} of {inc.offer.chunks} chunks missing"
            raise TransferIncompleteError(
                transfer_id, reason,
                self._progress(inc, transfer_id, "incomplete", reason=reason),
                to_ranges(missing))
        bad = self._assemble(inc, out)
        if bad:
            inc.handed = False
            drop = self._chunks_of(inc.offer, bad)
            for i in drop:
                (inc.chunk_dir / f"{i:06d}").unlink(missing_ok=True)
            inc.have -= drop
            shutil.rmtree(out, ignore_errors=True)
            reason = f"{', '.join(bad)}: size or sha256 differs from the offer; " \
                     f"{len(drop)} chunks to send again"
            _log.warning("bundle %s: %s", inc.offer.version, reason)
            raise TransferIncompleteError(
                transfer_id, reason,
                self._progress(inc, transfer_id, "incomplete", reason=reason),
                to_ranges(drop))
        why = _manifest_mismatch(out, inc.offer)
        if why is not None:
            payload = self._progress(inc, transfer_id, "refused", reason=why)
            self._drop(inc)
            raise TransferRefusedError(transfer_id, why, payload)
        # The chunks stay until `result`: after a restart before the install answered, the
        # bundle is reassembled from them (an unverified ``bundle/`` is never trusted).
        inc.assembled = True
        return out

    def _assemble(self, inc: _Incoming, out: Path) -> list[str]:
        """Write the files from the chunks; the names of those that do not match the offer."""
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        stream = _ChunkStream(inc.chunk_dir, inc.offer.chunks)
        bad: list[str] = []
        for f in inc.offer.files:
            digest = hashlib.sha256()
            left = f.size
            with open(out / f.name, "wb") as dst:
                while left > 0:
                    piece = stream.read(min(left, _COPY_BYTES))
                    if not piece:
                        break
                    dst.write(piece)
                    digest.update(piece)
                    left -= len(piece)
            if left or digest.hexdigest() != f.sha256:
                bad.append(f.name)
        return bad

    @staticmethod
    def _chunks_of(offer: Offer, names: Sequence[str]) -> set[int]:
        out: set[int] = set()
        start = 0
        for f in offer.files:
            if f.name in names and f.size:
                out.update(range(start // offer.chunk_size,
                                 (start + f.size - 1) // offer.chunk_size + 1))
            start += f.size
        return out

    def installing(self, transfer_id: str) -> bytes:
        """The ``installing`` progress payload (publish it before `ModelStore.install`)."""
        inc = self._by_tid.get(transfer_id)
        if inc is None:
            raise KeyError(transfer_id)
        return self._progress(inc, transfer_id, "installing")

    def result(
        self, transfer_id: str, *, ok: bool, version_before: str | None,
        version_after: str | None, reason: str = "",
    ) -> bytes:
        """The final payload (``installed`` or ``refused``) after the install; deletes the
        incoming copy either way (rule 6) and remembers the answer for a repeated offer."""
        inc = self._by_tid.get(transfer_id)
        if inc is None:
            raise KeyError(transfer_id)
        payload = self._progress(inc, transfer_id, "installed" if ok else "refused",
                                 reason=reason, version_before=version_before,
                                 version_after=version_after)
        for tid in inc.transfer_ids:
            self._results[tid] = payload
        while len(self._results) > _KEEP_RESULTS:
            self._results.popitem(last=False)
        self._drop(inc)
        return payload

    # -- payloads ----------------------------------------------------------------------------

    def _progress(
        self, inc: _Incoming, tid: str, state: str, *, reason: str = "",
        version_before: str | None = None, version_after: str | None = None,
    ) -> bytes:
        return self._payload({
            "transfer": tid, "version": inc.offer.version, "state": state,
            "received": len(inc.have), "chunks": inc.offer.chunks,
            "bytes": inc.received_bytes(), "total_bytes": inc.offer.total_bytes,
            "missing": to_ranges(inc.missing()), "last": inc.last, "bad_chunks": inc.bad,
            "reason": reason, "version_before": version_before, "version_after": version_after,
        })

    def _payload(self, body: dict[str, Any]) -> bytes:
        body = {**body, "device": self.device, "time": iso_utc(self._clock())}
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    def describe(self) -> dict[str, Any]:
        """Counters and what is being received, JSON-ready (for the status and logs)."""
        return {**asdict(self.counters), "transfers": self.transfers()}

    def transfers(self) -> list[dict[str, Any]]:
        """What is being received, for the status and logs."""
        return [{"version": i.offer.version, "received": len(i.have), "chunks": i.offer.chunks,
                 "bad_chunks": i.bad, "duplicates": i.duplicates}
                for i in self._by_key.values()]


def _peek_transfer(payload: bytes) -> str | None:
    """The transfer id of a chunk that failed its checks, when its header is readable."""
    if len(payload) < CHUNK_HEADER.size or payload[:4] != CHUNK_MAGIC:
        return None
    return bytes(payload[4:20]).hex()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


class _ChunkStream:
    """Chunk files 0..n-1 read back as one stream."""

    def __init__(self, directory: Path, chunks: int) -> None:
        self._dir = directory
        self._chunks = chunks
        self._next = 0
        self._buf = b""

    def read(self, n: int) -> bytes:
        while len(self._buf) < n and self._next < self._chunks:
            try:
                self._buf += (self._dir / f"{self._next:06d}").read_bytes()
            except FileNotFoundError:
                break
            self._next += 1
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _manifest_mismatch(directory: Path, offer: Offer) -> str | None:
    """Why the offered files disagree with the manifest they carry, or None (rule 5)."""
    try:
        raw = json.loads((directory / _MANIFEST).read_bytes())
        listed = raw["files"]
        if not isinstance(listed, dict):
            return f"{_MANIFEST}: files is not an object"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{_MANIFEST}: unreadable ({exc})"
    offered = {f.name: f for f in offer.files if f.name not in REQUIRED_FILES}
    for name, entry in listed.items():
        f = offered.get(name)
        if f is None:
            return f"{name}: listed in the manifest but not offered"
        if not isinstance(entry, dict) or (entry.get("size"), entry.get("sha256")) != (
                f.size, f.sha256):
            return f"{name}: size or sha256 differs from the manifest"
    extra = sorted(set(offered) - set(listed))
    if extra:
        return f"{', '.join(extra)}: offered but not in the manifest"
    return None

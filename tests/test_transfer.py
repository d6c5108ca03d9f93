"""Bundle transfer without a network (docs/flashing.md): the device's receiver
(edge/transfer.py) and the workstation's planning and per-device state machine
(training/flash.py), fed with each other's bytes and a fake clock."""

from __future__ import annotations

import filecmp
import hashlib
import io
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from _bundles import trusted, variant
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.learned import check_bundle
from edge.modelstore import ModelStore
from edge.transfer import (
    CHUNK_HEADER,
    CHUNK_LEAF,
    OFFER_LEAF,
    ChunkError,
    Offer,
    OfferFile,
    TransferIncompleteError,
    TransferReceiver,
    TransferRefusedError,
    UnknownTransferError,
    decode_chunk,
    encode_chunk,
    expand_ranges,
    to_ranges,
)
from models.bundle import MANIFEST_FILE, packaged_bundle
from training.flash import (
    BundlePlan,
    DeviceFlash,
    FlashResult,
    PlanError,
    ProgressDisplay,
    Snapshot,
    format_table,
    plan_bundle,
)

KEY = Ed25519PrivateKey.generate()
TID = "a" * 32
TID2 = "b" * 32


class Clock:
    """A frozen Unix time (the receiver compares it with directory mtimes), moved by hand."""

    def __init__(self, t: float | None = None) -> None:
        self.t = time.time() if t is None else t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return variant(tmp_path_factory.mktemp("src") / "b", "v-new", key=KEY)


@pytest.fixture(scope="module")
def plan(bundle: Path) -> BundlePlan:
    return plan_bundle(bundle)


def _rx(tmp_path: Path, clock: Clock | None = None, **kw: Any) -> TransferReceiver:
    return TransferReceiver(tmp_path / "incoming", device="d1", clock=clock or Clock(), **kw)


def _offer(plan: BundlePlan, tid: str = TID, ack_every: int = 8) -> bytes:
    return plan.offer(tid, ack_every).to_json()


def _p(payload: bytes | None) -> dict[str, Any]:
    assert payload is not None
    data = json.loads(payload)
    assert isinstance(data, dict)
    return data


# -- the wire format ---------------------------------------------------------------------------


def test_chunk_roundtrip_and_damage_detected() -> None:
    msg = encode_chunk(TID, 7, b"hello")
    assert len(msg) == CHUNK_HEADER.size + 5 == 61
    c = decode_chunk(msg)
    assert (c.transfer_id, c.index, c.data) == (TID, 7, b"hello")
    with pytest.raises(ChunkError, match="sha256"):
        decode_chunk(msg[:-1] + b"X")
    with pytest.raises(ChunkError, match="magic"):
        decode_chunk(b"XXXX" + msg[4:])
    with pytest.raises(ChunkError, match="shorter"):
        decode_chunk(msg[:10])


def test_ranges_roundtrip_and_hostile_ranges_refused() -> None:
    assert to_ranges([5, 0, 1, 2, 9, 8]) == [[0, 2], [5, 5], [8, 9]]
    assert expand_ranges([[0, 2], [5, 5]], 10) == {0, 1, 2, 5}
    for bad in ([[3, 1]], [[0, 10]], [[-1, 0]], [[0]], "0-3", [[True, 1]]):
        with pytest.raises(ValueError, match="missing"):
            expand_ranges(bad, 10)


# -- sender planning ---------------------------------------------------------------------------


def test_plan_cuts_the_signed_bundle_into_hashed_chunks(plan: BundlePlan, bundle: Path) -> None:
    names = [f.name for f in plan.files]
    assert names == sorted(names)
    assert {"manifest.json", "manifest.sig"} <= set(names)
    assert plan.stream == b"".join((bundle / n).read_bytes() for n in names)
    assert plan.chunks == -(-plan.total_bytes // plan.chunk_size) == len(plan.digests)
    for i in (0, plan.chunks - 1):
        c = decode_chunk(plan.chunk(TID, i))
        assert c.index == i
        assert c.data == plan.chunk_data(i)
        assert len(c.data) == plan.chunk_length(i)
    offer = Offer.parse(_offer(plan))  # what the device will accept
    assert (offer.chunks, offer.total_bytes, offer.version) == (plan.chunks, plan.total_bytes,
                                                                "v-new")


def test_plan_refuses_unsigned_and_tampered_bundles(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="unsigned"):
        plan_bundle(packaged_bundle())  # the shipped bundle carries no signature
    bad = variant(tmp_path / "bad", "v-bad", key=KEY)
    with (bad / "risk.npz").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(PlanError, match=r"risk\.npz"):
        plan_bundle(bad)
    with pytest.raises(PlanError, match="chunk-size"):
        plan_bundle(packaged_bundle(), chunk_size=100)


def test_sender_keeps_a_window_and_resends_what_was_lost(plan: BundlePlan) -> None:
    d = DeviceFlash("d1", plan, TID, now=0.0, ack_every=4, stall_s=5.0, max_reoffers=1)
    assert d.window == 16
    first = d.poll(0.0)
    assert [leaf for leaf, _ in first] == [OFFER_LEAF]
    assert d.poll(0.1) == []  # nothing is sent before the device says what it needs
    everything = [[0, plan.chunks - 1]]
    d.on_progress({"transfer": TID, "state": "receiving", "missing": everything,
                   "last": None}, 0.2)
    sent = [decode_chunk(p).index for leaf, p in d.poll(0.2) if leaf == CHUNK_LEAF]
    assert sent == list(range(16))  # the window
    assert d.poll(0.3) == []
    # The device processed 0..7 but 3 was damaged: 3 goes again at once, 8..15 are in flight.
    d.on_progress({"transfer": TID, "state": "receiving",
                   "missing": [[3, 3], [8, plan.chunks - 1]], "last": 7}, 0.4)
    sent = [decode_chunk(p).index for _, p in d.poll(0.4)]
    assert sent[0] == 3
    assert sent[1:] == list(range(16, 23))
    assert d.poll(0.5) == []
    # Another sender's progress (other transfer id) is ignored.
    d.on_progress({"transfer": TID2, "state": "installed", "missing": []}, 0.6)
    assert not d.done


def test_sender_reoffers_on_stall_then_fails_with_a_clear_reason(plan: BundlePlan) -> None:
    d = DeviceFlash("ghost", plan, TID, now=0.0, stall_s=2.0, max_reoffers=2, timeout_s=60)
    offers = 0
    t = 0.0
    while not d.done and t < 30:  # bounded
        offers += sum(leaf == OFFER_LEAF for leaf, _ in d.poll(t))
        t += 0.5
    assert d.done
    assert offers == 3
    r = d.result(t)
    assert r.outcome == "failed"
    assert "no answer to 3 offers" in r.reason
    assert (r.chunks_sent, r.bytes_sent) == (0, 0)


def test_sender_times_out(plan: BundlePlan) -> None:
    d = DeviceFlash("slow", plan, TID, now=0.0, stall_s=100, timeout_s=3)
    d.poll(0.0)
    d.on_progress({"transfer": TID, "state": "installing", "missing": []}, 1.0)
    d.poll(2.0)
    assert not d.done
    d.poll(3.0)
    assert d.result(3.0).outcome == "failed"
    assert "timed out after 3 s" in d.result(3.0).reason


# -- the receiver ------------------------------------------------------------------------------


def _send(rx: TransferReceiver, plan: BundlePlan, indices: list[int], tid: str = TID) -> list[
        dict[str, Any]]:
    return [_p(out) for i in indices if (out := rx.chunk(plan.chunk(tid, i))) is not None]


def test_out_of_order_duplicates_and_bad_chunks_then_byte_identical_bundle(
    tmp_path: Path, plan: BundlePlan, bundle: Path,
) -> None:
    rx = _rx(tmp_path)
    answer = _p(rx.offer(_offer(plan)))
    assert answer["state"] == "receiving"
    assert answer["missing"] == [[0, plan.chunks - 1]]
    assert answer["device"] == "d1"
    order = list(range(plan.chunks))
    random.Random(4).shuffle(order)
    reports = _send(rx, plan, order[:10] + order[:3])  # three duplicates
    damaged = bytearray(plan.chunk(TID, order[10]))
    damaged[-1] ^= 0xFF  # data no longer matches the hash in the header
    if (out := rx.chunk(bytes(damaged))) is not None:
        reports.append(_p(out))
    reports += _send(rx, plan, order[10:])
    assert [r["state"] for r in reports][-1] == "complete"
    assert all(r["state"] == "receiving" for r in reports[:-1])
    # every 8 chunk messages (ack_every), plus the completion (which is the report of the
    # last message: when that is an 8th one, there is one report, not two)
    messages = plan.chunks + 4  # 3 duplicates and 1 damaged chunk
    assert len(reports) == (messages - 1) // 8 + 1
    assert reports[-1]["bad_chunks"] == 1
    assert reports[-1]["missing"] == []
    assert rx.counters.malformed_chunks == 1
    assert rx.ready() == [TID]
    assert rx.ready() == []
    out = rx.completed(TID)
    for f in plan.files:
        assert filecmp.cmp(out / f.name, bundle / f.name, shallow=False), f.name
    assert sorted(p.name for p in out.iterdir()) == sorted(f.name for f in plan.files)
    # The reassembled directory is what the real model store installs.
    store = ModelStore(tmp_path / "store")
    installed = store.install(out, trusted=[trusted(KEY)], check=check_bundle)
    assert installed.version == "v-new"
    assert _p(rx.installing(TID))["state"] == "installing"
    final = _p(rx.result(TID, ok=True, version_before="v-old", version_after="v-new"))
    assert (final["state"], final["version_before"], final["version_after"]) == (
        "installed", "v-old", "v-new")
    assert list((tmp_path / "incoming").iterdir()) == []  # deleted once answered
    assert _p(rx.offer(_offer(plan)))["state"] == "installed"  # a repeated offer: the answer


def test_truncated_transfer_is_reported_incomplete_and_never_handed_over(
    tmp_path: Path, plan: BundlePlan,
) -> None:
    clock = Clock()
    rx = _rx(tmp_path, clock, stall_s=30)
    rx.offer(_offer(plan))
    half = plan.chunks // 2
    _send(rx, plan, list(range(half)))
    assert rx.ready() == []
    with pytest.raises(TransferIncompleteError) as err:
        rx.completed(TID)
    assert err.value.missing == [[half, plan.chunks - 1]]
    report = _p(err.value.progress)
    assert report["state"] == "incomplete"
    assert report["missing"] == [[half, plan.chunks - 1]]
    assert not (tmp_path / "incoming" / Offer.parse(_offer(plan)).key / "bundle").exists()
    clock.t += 29
    assert rx.poll() == []
    clock.t += 1
    stalled = [_p(p) for p in rx.poll()]
    assert [s["state"] for s in stalled] == ["incomplete"]
    assert stalled[0]["missing"] == [[half, plan.chunks - 1]]
    assert "stalled" in stalled[0]["reason"]
    assert rx.poll() == []  # once per stall
    with pytest.raises(UnknownTransferError):
        rx.completed(TID2)


def test_resume_after_restart_and_after_a_new_offer(tmp_path: Path, plan: BundlePlan) -> None:
    rx = _rx(tmp_path)
    rx.offer(_offer(plan))
    _send(rx, plan, list(range(10)))
    (tmp_path / "incoming" / Offer.parse(_offer(plan)).key / "chunks" / ".000011.tmp").write_bytes(
        b"cut by a power cut")
    # The edge restarts: a new receiver on the same directory keeps the ten chunks, and the
    # chunks still arriving for the same transfer are taken without a new offer.
    rx = _rx(tmp_path)
    assert rx.transfers()[0]["received"] == 10
    _send(rx, plan, [10, 11])
    # A new run of the sender: a new transfer id, the same bundle; only the rest is asked for.
    answer = _p(rx.offer(_offer(plan, TID2)))
    assert answer["missing"] == [[12, plan.chunks - 1]]
    assert answer["transfer"] == TID2
    reports = _send(rx, plan, list(range(12, plan.chunks)), TID2)
    assert reports[-1]["state"] == "complete"
    assert rx.ready() == [TID2]
    rx.completed(TID2)


def test_a_complete_transfer_found_after_restart_is_handed_over_when_offered_again(
    tmp_path: Path, plan: BundlePlan,
) -> None:
    rx = _rx(tmp_path)
    rx.offer(_offer(plan))
    _send(rx, plan, list(range(plan.chunks)))
    rx = _rx(tmp_path)  # restarted before installing
    assert rx.ready() == []  # nothing installs on its own after a restart
    assert _p(rx.offer(_offer(plan, TID2)))["state"] == "complete"
    assert rx.ready() == [TID2]
    assert (rx.completed(TID2) / MANIFEST_FILE).is_file()


def test_chunk_damaged_on_disk_is_caught_at_reassembly_and_fetched_again(
    tmp_path: Path, plan: BundlePlan,
) -> None:
    rx = _rx(tmp_path)
    rx.offer(_offer(plan))
    _send(rx, plan, list(range(plan.chunks)))
    victim = tmp_path / "incoming" / Offer.parse(_offer(plan)).key / "chunks" / "000003"
    victim.write_bytes(bytes(len(victim.read_bytes())))  # same size, zeros: a power cut
    with pytest.raises(TransferIncompleteError) as err:
        rx.completed(rx.ready()[0])
    again = sorted(expand_ranges(err.value.missing, plan.chunks))
    assert 3 in again
    assert _p(err.value.progress)["state"] == "incomplete"
    reports = _send(rx, plan, again)
    assert reports[-1]["state"] == "complete"
    rx.completed(rx.ready()[0])


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "..", ".hidden", "x..y", "",
                                  "x" * 200, "bad name"])
def test_unsafe_file_names_are_refused(tmp_path: Path, plan: BundlePlan, name: str) -> None:
    rx = _rx(tmp_path)
    files = [*plan.files, OfferFile(name, 3, "0" * 64)]
    answer = _p(rx.offer(Offer(TID, "v", plan.chunk_size, tuple(files)).to_json()))
    assert answer["state"] == "refused"
    assert "file name" in answer["reason"] or "name" in answer["reason"]
    assert list((tmp_path / "incoming").iterdir()) == []
    assert rx.counters.offers_refused == 1


def test_oversize_unsigned_and_disk_full_offers_are_refused(
    tmp_path: Path, plan: BundlePlan,
) -> None:
    small = _rx(tmp_path, max_bytes=plan.total_bytes - 1)
    reason = _p(small.offer(_offer(plan)))["reason"]
    assert f"{plan.total_bytes} bytes: this device accepts at most" in reason
    rx = _rx(tmp_path)
    unsigned = tuple(f for f in plan.files if f.name != "manifest.sig")
    reason = _p(rx.offer(Offer(TID, "v", plan.chunk_size, unsigned).to_json()))["reason"]
    assert "manifest.sig is not offered" in reason
    full = _rx(tmp_path, disk_free=lambda _p: plan.total_bytes)
    assert "not enough disk" in _p(full.offer(_offer(plan)))["reason"]
    for bad in (b"not json", b"[]", json.dumps({"protocol": 2}).encode(),
                json.dumps({**json.loads(_offer(plan)), "chunks": 1}).encode(),
                json.dumps({**json.loads(_offer(plan)), "chunk_size": 100}).encode()):
        assert _p(rx.offer(bad))["state"] == "refused"
    assert list((tmp_path / "incoming").iterdir()) == []


def test_malformed_chunks_are_counted_and_never_fatal(tmp_path: Path, plan: BundlePlan) -> None:
    rx = _rx(tmp_path)
    rx.offer(_offer(plan, ack_every=64))
    good = plan.chunk(TID, 0)
    for junk in (b"", b"VGC\x01", b"garbage" * 20, good[:-1],
                 encode_chunk(TID2, 0, b"unknown transfer"),
                 encode_chunk(TID, plan.chunks, b"index out of range"),
                 encode_chunk(TID, 0, b"wrong length")):
        assert rx.chunk(junk) is None
    assert rx.counters.malformed_chunks == 4
    assert rx.counters.unknown_chunks == 1
    assert rx.transfers()[0]["bad_chunks"] == 3  # the two above and good[:-1] (its header)
    assert rx.transfers()[0]["received"] == 0


def test_one_bundle_at_a_time_an_idle_one_is_replaced(
    tmp_path: Path, plan: BundlePlan, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    other = plan_bundle(variant(tmp_path_factory.mktemp("o") / "b", "v-other", key=KEY))
    clock = Clock()
    rx = _rx(tmp_path, clock, stall_s=30)
    rx.offer(_offer(plan))
    _send(rx, plan, [0])
    busy = _p(rx.offer(other.offer(TID2).to_json()))
    assert busy["state"] == "refused"
    assert busy["reason"].startswith("busy: receiving bundle v-new")
    clock.t += 31
    assert _p(rx.offer(other.offer(TID2).to_json()))["state"] == "receiving"
    assert len(list((tmp_path / "incoming").iterdir())) == 1  # the idle one was deleted
    assert rx.chunk(plan.chunk(TID, 1)) is None
    assert rx.counters.unknown_chunks == 1


def test_stale_incoming_directories_are_deleted_at_start(tmp_path: Path, plan: BundlePlan) -> None:
    clock = Clock(t=os.stat(tmp_path).st_mtime + 10)
    rx = _rx(tmp_path, clock)
    rx.offer(_offer(plan))
    _send(rx, plan, [0, 1])
    key_dir = tmp_path / "incoming" / Offer.parse(_offer(plan)).key
    (tmp_path / "incoming" / "junk").mkdir()
    (tmp_path / "incoming" / "junk" / "offer.json").write_text("{")
    assert _rx(tmp_path, clock).transfers()[0]["received"] == 2  # young: kept
    assert not (tmp_path / "incoming" / "junk").exists()  # unreadable: removed
    clock.t = max(key_dir.stat().st_mtime, (key_dir / "chunks").stat().st_mtime) + 86_400 + 1
    rx = _rx(tmp_path, clock)
    assert rx.transfers() == []
    assert rx.counters.stale_removed == 1
    assert not key_dir.exists()


def test_files_not_matching_their_manifest_are_refused(
    tmp_path: Path, plan: BundlePlan, bundle: Path,
) -> None:
    extra = b"not part of the bundle"
    src = tmp_path / "src"
    src.mkdir()
    for f in plan.files:
        (src / f.name).write_bytes((bundle / f.name).read_bytes())
    (src / "extra.bin").write_bytes(extra)
    files = sorted([*plan.files, OfferFile("extra.bin", len(extra),
                                           hashlib.sha256(extra).hexdigest())],
                   key=lambda f: f.name)
    stream = b"".join((src / f.name).read_bytes() for f in files)
    offer = Offer(TID, "v-new", plan.chunk_size, tuple(files))
    rx = _rx(tmp_path)
    rx.offer(offer.to_json())
    for i in range(offer.chunks):
        rx.chunk(encode_chunk(TID, i, stream[i * offer.chunk_size:(i + 1) * offer.chunk_size]))
    with pytest.raises(TransferRefusedError, match=r"extra\.bin: offered but not in the manifest"):
        rx.completed(rx.ready()[0])
    assert list((tmp_path / "incoming").iterdir()) == []


# -- both sides together, no network -----------------------------------------------------------


def test_sender_and_receiver_over_a_lossy_in_memory_link(tmp_path: Path, plan: BundlePlan) -> None:
    """Every 7th chunk message is lost; the sender's gap rule and stall re-offers get the
    bundle through, and the device's answer ends the sender's state machine."""
    clock = Clock()
    rx = _rx(tmp_path, clock)
    d = DeviceFlash("d1", plan, TID, now=clock.t, ack_every=4, stall_s=2.0, max_reoffers=3,
                    timeout_s=120)
    lost = 0
    chunk_messages = 0
    for _ in range(10_000):  # bounded
        if d.done:
            break
        replies: list[bytes] = []
        for leaf, payload in d.poll(clock.t):
            if leaf == OFFER_LEAF:
                replies.append(rx.offer(payload))
                continue
            chunk_messages += 1
            if chunk_messages % 7 == 0:
                lost += 1
                continue
            if (out := rx.chunk(payload)) is not None:
                replies.append(out)
        for tid in rx.ready():
            path = rx.completed(tid)
            replies.append(rx.installing(tid))
            assert (path / MANIFEST_FILE).is_file()
            replies.append(rx.result(tid, ok=True, version_before="v-old", version_after="v-new"))
        for r in replies:
            d.on_progress(json.loads(r), clock.t)
        clock.t += 0.1
    result = d.result(clock.t)
    assert result.outcome == "installed", result.reason
    assert (result.version_before, result.version_after) == ("v-old", "v-new")
    assert lost > 0
    assert result.chunks_sent == chunk_messages
    assert plan.chunks < result.chunks_sent < 2 * plan.chunks


# -- what the workstation prints ---------------------------------------------------------------


def test_progress_lines_and_final_table() -> None:
    snaps = [Snapshot("bed-1", "sending", 500_000, 1_000_000, 16),
             Snapshot("bed-22", "offering", 0, 1_000_000, 0)]
    tty = io.StringIO()
    shown = ProgressDisplay(tty, tty=True, interval_s=0.1)
    shown.update(snaps, 0.0)
    shown.update(snaps, 0.05)  # too soon: nothing drawn
    shown.update(snaps, 0.2)
    frames = tty.getvalue().split("\x1b[2F")  # the second frame moves up over the first
    assert len(frames) == 2
    assert "bed-1    [############            ]  50.0% 500.0 kB / 1.0 MB  sending" in frames[1]
    log = io.StringIO()
    lines = ProgressDisplay(log, tty=False, interval_s=5.0)
    lines.update(snaps, 0.0)
    lines.update(snaps, 1.0)  # nothing changed state, not yet time
    lines.update([Snapshot("bed-1", "installed", 1_000_000, 1_000_000, 31), snaps[1]], 2.0)
    assert log.getvalue().count("\n") == 3
    assert "\x1b" not in log.getvalue()
    table = format_table([
        FlashResult("bed-1", "v1", "v2", "installed", "", 1.25, 1_750_000, 54),
        FlashResult("bed-22", None, None, "failed", "no answer to 4 offers", 20.0, 0, 0)])
    rows = table.splitlines()
    assert rows[0].split() == ["device", "before", "after", "outcome", "seconds", "bytes",
                               "reason"]
    assert rows[1].split() == ["bed-1", "v1", "v2", "installed", "1.2", "1.8", "MB"]
    assert rows[2].endswith("failed     20.0     0 B     no answer to 4 offers")

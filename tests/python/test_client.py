"""The Python client (`clients/python`, package `editfeed`) against real daemons: tensor
shapes and zero-copy views, digests equal to `editfeed fetch --hash`, checkpoint and
failover when a daemon is killed, server errors, unreachable endpoints and foreign cursors."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from conftest import DATASET, run_editfeed

import editfeed
from editfeed import Client, EditFeedError

# Steps 0-1 single-turn, 2-3 preference, 4-5 multi-turn; the stream ends at step 6.
CURRICULUM = [
    {"until_step": 2, "weights": {"sft": 1.0}},
    {"until_step": 4, "weights": {"preference": 1.0}},
    {"until_step": 6, "weights": {"multi_turn": 1.0}},
]
CURRICULUM_TOML = """
[[curriculum]]
until_step = 2
weights = { sft = 1.0 }

[[curriculum]]
until_step = 4
weights = { preference = 1.0 }

[[curriculum]]
until_step = 6
weights = { multi_turn = 1.0 }
"""


def fetch_hashes(endpoint: str, *args: str) -> tuple[list[tuple[int, str, str]], str]:
    """`editfeed fetch --hash`: [(step, subset, digest)] and the final cursor."""
    lines = run_editfeed("fetch", "--endpoint", endpoint, "--dataset", DATASET, "--hash", *args).splitlines()
    rows = []
    for line in lines[:-1]:
        step, _rank, subset, digest = line.split()
        rows.append((int(step), subset, digest))
    return rows, lines[-1]


def rows(batches) -> list[tuple[int, str, str]]:
    """(step, subset, digest) of each batch."""
    return [(b.step, b.subset, b.digest()) for b in batches]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streams_tensors_per_subset_as_views_on_the_message(daemon):
    """Every subset's tensors have the documented shapes and dtypes, the metadata one
    entry per sample, and the arrays view the message bytes."""
    client = Client(daemon.endpoint)
    info = client.describe()
    assert [d.name for d in info.datasets] == [DATASET]
    spec = {"seed": 5, "global_batch": 8, "curriculum": CURRICULUM}
    batches = list(client.stream(DATASET, spec, rank=1, world_size=2, size=40, height=32))
    assert [b.step for b in batches] == list(range(6))
    assert [b.subset for b in batches] == ["sft"] * 2 + ["preference"] * 2 + ["multi_turn"] * 2
    expected = {"sft": ["source", "target"], "preference": ["source", "chosen", "rejected"]}
    B, H, W = 4, 32, 40
    for b in batches:
        assert (b.rank, b.world_size, len(b)) == (1, 2, B)
        for name in editfeed.METADATA_FIELDS:
            assert len(getattr(b, name)) == B, name
        assert all(s == b.subset for s in b.subsets)
        assert all(b.texts) and all(b.keys)
        assert b.cursor.startswith(f"ef1:{b.step + 1}:")
        if b.subset == "multi_turn":
            images, counts = b["images"], b["turn_counts"]
            assert images.dtype == np.uint8 and images.ndim == 5
            assert images.shape[0] == B and images.shape[2:] == (H, W, 3)
            assert counts.dtype == np.int32 and counts.shape == (B,)
            assert counts.tolist() == b.turns
            assert all(len(t) == images.shape[1] - 1 for t in b.turn_texts)
            assert set(b.tensors) == {"images", "turn_counts"}
        else:
            assert list(b.tensors) == expected[b.subset]
            for array in b.tensors.values():
                assert array.dtype == np.uint8 and array.shape == (B, H, W, 3)
        for tensor in b.message.tensors:
            array = b.tensors[tensor.name]
            # A view on the message's bytes, not a copy.
            assert not array.flags.owndata and array.base is not None
            assert array.flags.writeable
            assert array.tobytes() == tensor.data


@pytest.mark.parametrize(
    "rank,world_size,encoded,with_file",
    [(0, 1, False, False), (1, 2, False, True), (0, 2, True, True)],
)
def test_digests_equal_fetch_hash(daemon, tmp_path: Path, rank, world_size, encoded, with_file):
    """The Python digests equal `editfeed fetch --hash` for the same request (spec as a
    dict or as a curriculum file, pixels or encoded bytes), and so does the cursor."""
    curriculum = tmp_path / "curriculum.toml"
    curriculum.write_text(CURRICULUM_TOML)
    args = ["--seed", "9", "--global-batch", "8", "--world-size", str(world_size), "--rank", str(rank)]
    args += ["--steps", "6", "--size", "48"]
    if encoded:
        args.append("--encoded")
    if with_file:
        args += ["--curriculum", str(curriculum)]
        spec = curriculum
    else:
        spec = {}
    expected, cursor = fetch_hashes(daemon.endpoint, *args)
    stream = Client(daemon.endpoint).stream(
        DATASET, spec, rank=rank, world_size=world_size, size=48, encoded=encoded, max_batches=6, seed=9, global_batch=8
    )
    got = list(stream)
    assert rows(got) == expected
    assert stream.cursor == cursor == got[-1].cursor
    assert [editfeed.batch_digest(b.message) for b in got] == [d for _, _, d in expected]
    if encoded:
        first = got[0]
        slots = first.encoded_images(0)
        assert len(slots) >= 2 and bytes(slots[0][:2]) == b"\xff\xd8"  # the source JPEG


def test_failover_to_the_next_daemon_keeps_the_bytes(start_daemon):
    """Daemon A is killed mid-stream; the stream moves to B at the last cursor and the
    whole sequence equals an uninterrupted run, hash for hash."""
    a, b = start_daemon(), start_daemon()
    spec = {"seed": 3, "global_batch": 8}
    expected, _ = fetch_hashes(b.endpoint, "--seed", "3", "--global-batch", "8", "--steps", "30", "--size", "64")
    # A small receive window so daemon A cannot push the stream ahead into this
    # process's buffers before it is killed: the kill lands mid-stream.
    client = Client(
        [a.endpoint, b.endpoint],
        backoff=0.05,
        channel_options=[("grpc.http2.lookahead_bytes", 65536), ("grpc.http2.bdp_probe", 0)],
    )
    stream = client.stream(DATASET, spec, size=64, max_batches=30)
    got = [next(stream) for _ in range(3)]
    assert {x.endpoint for x in got} == {a.endpoint}
    a.kill()
    got += list(stream)
    assert rows(got) == expected
    assert stream.failovers and stream.failovers[0][0] == a.endpoint
    assert got[-1].endpoint == b.endpoint
    assert stream.received == 30


def test_tls_streams_the_same_batches_and_refuses_an_untrusted_daemon(start_daemon, tmp_path: Path, monkeypatch):
    """A daemon with TLS (a certificate from tests/support/make-test-certs.sh) streams
    the same batches to a client trusting its CA as a plaintext daemon does; a client
    that does not trust it gets UNAVAILABLE."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "support" / "make-test-certs.sh"
    subprocess.run(["bash", str(script), str(tmp_path)], check=True)
    plain = start_daemon()
    monkeypatch.setenv("EDITFEED_TLS_CERT_FILE", str(tmp_path / "cert.pem"))
    monkeypatch.setenv("EDITFEED_TLS_KEY_FILE", str(tmp_path / "key.pem"))
    secure = start_daemon()
    endpoint = "https://" + secure.address
    spec = {"seed": 5, "global_batch": 4}
    expected, _ = fetch_hashes(plain.endpoint, "--seed", "5", "--global-batch", "4", "--steps", "4", "--size", "32")
    with Client(endpoint, root_certificates=(tmp_path / "ca.pem").read_bytes()) as client:
        got = list(client.stream(DATASET, spec, size=32, max_batches=4))
    assert rows(got) == expected
    with Client(endpoint, max_attempts=1) as untrusting, pytest.raises(EditFeedError) as e:
        next(iter(untrusting.stream(DATASET, spec, size=32, max_batches=1)))
    assert e.value.code == "UNAVAILABLE"


def test_the_admin_stubs_reach_the_admin_service(daemon):
    """The package carries the Admin service's stubs too; ListDatasets names the
    dataset the daemon serves, with its version."""
    import grpc

    from editfeed._pb import admin_pb2, admin_pb2_grpc

    with grpc.insecure_channel(daemon.admin_endpoint.removeprefix("http://")) as channel:
        listed = admin_pb2_grpc.AdminStub(channel).ListDatasets(admin_pb2.ListDatasetsRequest(), timeout=10)
    names = [d.info.name for d in listed.datasets]
    assert names == [DATASET], listed
    assert listed.datasets[0].info.version.startswith("sha256:")


def test_server_errors_reach_the_user_with_code_and_message(daemon):
    """NOT_FOUND and INVALID_ARGUMENT arrive as EditFeedError with the server's code and
    message; local mistakes are refused before sending."""
    client = Client(daemon.endpoint)
    spec = {"seed": 0, "global_batch": 8}
    with pytest.raises(EditFeedError) as e:
        next(client.stream("no-such-dataset", spec))
    assert e.value.code == "NOT_FOUND"
    assert "no-such-dataset" in e.value.message and DATASET in e.value.message
    assert e.value.endpoint == daemon.endpoint

    # An output side over the daemon's max_image_side: only the daemon knows its limit.
    with pytest.raises(EditFeedError) as e:
        next(client.stream(DATASET, spec, size=1_000_000))
    assert e.value.code == "INVALID_ARGUMENT"
    assert "output.width" in e.value.message and "output.width" in str(e.value)

    # Local mistakes are refused before anything is sent.
    with pytest.raises(ValueError, match="world_size: 3 does not divide"):
        client.stream(DATASET, spec, rank=0, world_size=3)
    with pytest.raises(ValueError, match="curriculm"):
        client.stream(DATASET, {"seed": 0, "global_batch": 8, "curriculm": []})
    with pytest.raises(EditFeedError, match="not an editfeed cursor"):
        client.stream(DATASET, spec, cursor="step-7")


def test_unreachable_endpoints_are_all_named_with_their_reason():
    """A list of endpoints where nothing listens fails naming each one and why."""
    endpoints = [f"127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    client = Client(endpoints, backoff=0.01)
    with pytest.raises(EditFeedError) as e:
        next(client.stream(DATASET, {"seed": 0, "global_batch": 8}))
    assert e.value.code == "UNAVAILABLE"
    for endpoint in endpoints:
        assert endpoint in e.value.message
    assert e.value.message.count("Connection refused") + e.value.message.count("failed to connect") >= 2
    with pytest.raises(EditFeedError) as e:
        client.describe(timeout=5)
    assert all(endpoint in e.value.message for endpoint in endpoints)


def test_cursor_from_another_spec_is_refused_before_any_batch(daemon):
    """A cursor of the seed-1 stream used with seed 2 is refused by the first next(),
    with no batch yielded; it still resumes its own stream."""
    client = Client(daemon.endpoint)
    first = list(client.stream(DATASET, {"seed": 1, "global_batch": 8}, size=32, max_batches=2))
    cursor = first[-1].cursor
    assert editfeed.Cursor.parse(cursor).step == 2

    received = []
    with pytest.raises(EditFeedError) as e:
        for batch in client.stream(DATASET, {"seed": 2, "global_batch": 8}, size=32, cursor=cursor):
            received.append(batch)
    assert received == []
    assert e.value.code == "INVALID_ARGUMENT"
    assert "spec" in e.value.message

    # The same cursor resumes its own spec.
    resumed = next(client.stream(DATASET, {"seed": 1, "global_batch": 8}, size=32, cursor=cursor))
    assert resumed.step == 2


def test_shared_memory_batches_equal_the_messages_and_go_back_to_the_daemon(start_daemon, tmp_path: Path, monkeypatch):
    """With a shared-memory folder in common, pixel tensors arrive as maps of the
    daemon's files: the same bytes and digests as in the messages, batches that pickle
    whole, files given back and written again, and nothing left once the stream ends."""
    import gc
    import os
    import pickle
    import tempfile
    import time

    shm = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    monkeypatch.setenv("EDITFEED_SHM_DIR", str(shm))
    d = start_daemon()
    spec = {"seed": 9, "global_batch": 8, "curriculum": CURRICULUM}
    inline = list(Client(d.endpoint, shm_dir="").stream(DATASET, spec, size=64))
    assert all(not b.message.shm_files for b in inline)
    client = Client(d.endpoint)
    assert client.shm_dir == str(shm)
    digests, files, pickled = [], [], None
    for b in client.stream(DATASET, spec, size=64):
        assert b.message.shm_files, f"step {b.step} came in the message"
        files += b.message.shm_files
        for name, array in b.tensors.items():
            expected = next(i for i in inline if i.step == b.step)[name]
            assert array.flags.writeable
            assert np.array_equal(array, expected), (b.step, name)
        digests.append(b.digest())
        if pickled is None:
            pickled = pickle.dumps(b)
    assert digests == [b.digest() for b in inline]
    # Files given back were written again for later batches.
    assert len(set(files)) < len(files)
    again = pickle.loads(pickled)
    assert again.digest() == inline[0].digest() and not again.message.shm_files
    del b
    gc.collect()
    deadline = time.time() + 10
    while os.listdir(shm) and time.time() < deadline:
        time.sleep(0.05)
    assert os.listdir(shm) == []
    os.rmdir(shm)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"world_size": 3}, r"world_size: 3 does not divide the global batch 8"),
        ({"world_size": 2, "rank": 2}, r"rank: 2 is out of range for world_size 2"),
        ({"world_size": 0}, r"world_size: must be positive"),
        (
            {"spec": {"seed": 1, "global_batch": 8, "curriculum": [{"weights": {"sft": 1.0, "edits": 1.0}}]}},
            r"curriculum\[0\]\.weights: unknown subset 'edits'",
        ),
    ],
)
def test_feed_checks_world_size_rank_and_subsets_when_made(kwargs, message):
    """What Feed's docs say is checked at construction raises there, before any
    channel opens (the endpoint here has no daemon), naming the field."""
    spec = kwargs.pop("spec", {"seed": 1, "global_batch": 8})
    endpoint = f"127.0.0.1:{free_port()}"
    with pytest.raises(ValueError, match=message):
        editfeed.Feed(endpoint, DATASET, spec, **kwargs)
    with pytest.raises(ValueError, match=message):
        Client(endpoint).stream(DATASET, spec, **kwargs)


def test_a_selection_narrows_the_stream_and_bad_filters_are_named(daemon):
    """``select`` in a spec dict: a category filter yields only that category; an
    unknown category and a split the dataset lacks come back as INVALID_ARGUMENT naming
    them; a malformed filter is refused before sending."""
    client = Client(daemon.endpoint)
    spec = {
        "seed": 3,
        "global_batch": 4,
        "curriculum": [{"weights": {"sft": 1.0}}],
        "select": {"exclude_categories": ["stylistic", "object_semantic"]},
    }
    batches = list(client.stream(DATASET, spec, size=32, max_batches=6))
    seen = {c for b in batches for c in b.categories}
    assert seen and not seen & {"stylistic", "object_semantic"}, seen
    unfiltered = {c for b in client.stream(DATASET, {**spec, "select": {}}, size=32, max_batches=6) for c in b.categories}
    assert unfiltered & {"stylistic", "object_semantic"}, "the fixture has the excluded categories"

    with pytest.raises(EditFeedError) as e:
        next(client.stream(DATASET, {**spec, "select": {"categories": ["texts"]}}, size=32))
    assert e.value.code == "INVALID_ARGUMENT"
    assert 'unknown category "texts"' in e.value.message and "text_symbol" in e.value.message
    with pytest.raises(EditFeedError) as e:
        next(client.stream(DATASET, {**spec, "select": {"split": "holdout"}}, size=32))
    assert e.value.code == "INVALID_ARGUMENT" and "select.split" in e.value.message
    assert "train, val, test" in e.value.message

    with pytest.raises(ValueError, match="spec.select: unknown key"):
        client.stream(DATASET, {**spec, "select": {"catgories": ["x"]}})
    with pytest.raises(ValueError, match="spec.select.min_turns"):
        client.stream(DATASET, {**spec, "select": {"min_turns": 0}})


EVAL = {"seed": 5, "global_batch": 4, "mode": "eval", "select": {"split": "test"}}


def test_an_eval_pass_of_the_test_split_is_the_same_on_1_and_3_workers_and_from_a_cursor(dataset_dir):
    """``mode: eval``: a finite pass over the test split, the same bytes from daemons
    with 1 and 3 workers and from a resumed cursor; every test sample once across 2
    ranks, padding rows masked out by ``Batch.valid``; augmentation is refused."""
    from conftest import Daemon

    one, three = Daemon(dataset_dir, DATASET, 1), Daemon(dataset_dir, DATASET, 3)
    try:
        for order in ("canonical", "seeded"):
            spec = {**EVAL, "order": order}
            a = list(Client(one.endpoint).stream(DATASET, spec, size=32))
            b = list(Client(three.endpoint).stream(DATASET, spec, size=32))
            assert a and rows(a) == rows(b)
            k = len(a) // 2
            rest = list(Client(three.endpoint).stream(DATASET, spec, size=32, cursor=a[k].cursor))
            assert rows(rest) == rows(a)[k + 1 :]
            keys = [(s, key) for batch in a for s, key, ok in zip(batch.subsets, batch.keys, batch.valid) if ok]
            assert len(keys) == len(set(keys))
            padded = [key for batch in a for key, ok in zip(batch.keys, batch.valid) if not ok]
            assert all(key == "" for key in padded)
            ranks = [
                list(Client(one.endpoint).stream(DATASET, spec, rank=r, world_size=2, size=32)) for r in range(2)
            ]
            assert len(ranks[0]) == len(ranks[1]) == len(a), "every rank gets every step"
            over_ranks = [
                (s, key) for part in ranks for batch in part for s, key, ok in zip(batch.subsets, batch.keys, batch.valid) if ok
            ]
            assert sorted(over_ranks) == sorted(keys)
        # The train split holds none of the test samples.
        train = list(Client(one.endpoint).stream(DATASET, {**EVAL, "select": {"split": "train"}}, size=32))
        train_keys = {(s, key) for batch in train for s, key, ok in zip(batch.subsets, batch.keys, batch.valid) if ok}
        assert train_keys and not train_keys & set(keys)
    finally:
        one.stop()
        three.stop()

    client = Client(one.endpoint)
    with pytest.raises(ValueError, match="eval stream"):
        client.stream(DATASET, EVAL, augment={"hflip": 0.5})
    with pytest.raises(ValueError, match="spec.mode"):
        client.stream(DATASET, {**EVAL, "mode": "evaluate"})
    with pytest.raises(ValueError, match="fit"):
        client.stream(DATASET, EVAL, fit="squash")


def test_keys_files_and_fetch_eval_select_the_same_pass(daemon, tmp_path):
    """A curriculum file with ``mode = "eval"`` and a ``keys_file``: the client reads
    the keys file next to it, the pass holds exactly those samples, and ``editfeed fetch
    --eval`` over the same file prints the same digests."""
    client = Client(daemon.endpoint)
    everything = list(client.stream(DATASET, {**EVAL, "select": {"subsets": ["sft"]}}, size=32))
    keys = [k for b in everything for k, ok in zip(b.keys, b.valid) if ok]
    chosen = keys[1:6:2]
    (tmp_path / "held.txt").write_text("# three samples\n" + "".join(f"sft/{k}\n" for k in chosen))
    toml = tmp_path / "eval.toml"
    toml.write_text('mode = "eval"\n[select]\nsubsets = ["sft"]\nkeys_file = "held.txt"\n')
    batches = list(client.stream(DATASET, str(toml), seed=5, global_batch=4, size=32))
    got = [k for b in batches for k, ok in zip(b.keys, b.valid) if ok]
    assert got == chosen  # canonical order
    assert batches[-1].valid.tolist() == [True, True, True, False]
    hashes, _cursor = fetch_hashes(
        daemon.endpoint, "--curriculum", str(toml), "--seed", "5", "--global-batch", "4", "--size", "32", "--steps", "0"
    )
    assert hashes == rows(batches)
    # The same entries as a deny list leave the rest.
    toml.write_text('mode = "eval"\n[select]\nsubsets = ["sft"]\nexclude_keys_file = "held.txt"\n')
    rest = [k for b in client.stream(DATASET, str(toml), seed=5, global_batch=4, size=32) for k, ok in zip(b.keys, b.valid) if ok]
    assert rest == [k for k in keys if k not in chosen]
    (tmp_path / "held.txt").write_text(f"sft/{chosen[0]}\nsft/no-such-key\n")
    with pytest.raises(EditFeedError) as e:
        next(client.stream(DATASET, str(toml), seed=5, global_batch=4, size=32))
    assert e.value.code == "INVALID_ARGUMENT" and '"sft/no-such-key" is not a sample' in e.value.message


def test_the_multi_turn_steps_view_serves_one_sample_per_turn(daemon):
    """``multi_turn: "steps"``: every turn of every chain once in an eval pass, as a
    single-step sample whose instruction is that turn's."""
    client = Client(daemon.endpoint)
    spec = {**EVAL, "select": {"subsets": ["multi_turn"]}}
    chains = list(client.stream(DATASET, spec, size=32))
    steps = list(client.stream(DATASET, {**spec, "multi_turn": "steps"}, size=32))
    instructions = {
        key: texts[:n] for b in chains for key, texts, n, ok in zip(b.keys, b.turn_texts, b.turns, b.valid) if ok
    }
    got: dict[str, list[str]] = {}
    for b in steps:
        assert set(b.tensors) == {"source", "target", "valid"} and b["source"].shape[1:] == (32, 32, 3)
        for key, turn, text, ok in zip(b.keys, b.chain_turns, b.texts, b.valid):
            if ok:
                assert turn == len(got.setdefault(key, [])) + 1
                got[key].append(text)
    assert got == instructions
    with pytest.raises(ValueError, match="spec.multi_turn"):
        client.stream(DATASET, {**spec, "multi_turn": "turns"})



def test_an_eval_feed_starts_each_iteration_at_the_pass_start(daemon, tmp_path):
    """An eval ``Feed``: every iteration is the pass again, with ``max_batches`` its
    first batches; an empty keys file is refused rather than selecting everything."""
    whole = [b.digest() for b in editfeed.Feed(daemon.endpoint, DATASET, EVAL, size=32)]
    feed = editfeed.Feed(daemon.endpoint, DATASET, EVAL, size=32, max_batches=2)
    first = [b.digest() for b in feed]
    second = [b.digest() for b in feed]
    assert first == second == whole[:2]
    full = editfeed.Feed(daemon.endpoint, DATASET, EVAL, size=32)
    assert [b.digest() for b in full] == whole and [b.digest() for b in full] == whole
    (tmp_path / "none.txt").write_text("# no keys yet\n")
    with pytest.raises(ValueError, match="none.txt: names no key"):
        editfeed.Feed(daemon.endpoint, DATASET, {**EVAL, "select": {"keys_file": str(tmp_path / "none.txt")}})

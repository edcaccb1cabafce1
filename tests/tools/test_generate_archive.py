"""Tests of tools.generate_archive: determinism, Firehose layout, shapes and truth."""

from __future__ import annotations

import gzip
import json
import re
import shlex
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stripe

from tools import generate_archive as ga

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tools.generate_archive"


def _generate_archive_arguments(text: str) -> list[str]:
    """The arguments of the one `python -m tools.generate_archive ...` command in `text`
    (shell lines, backslash continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    (line,) = [line for line in joined.splitlines() if f"-m {MODULE} " in line]
    words = shlex.split(line)
    return words[words.index(MODULE) + 1 :]


def _make_recipe(target: str) -> str:
    """The recipe (tab-indented lines) of `target` in the Makefile."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert match, f"no {target} target in the Makefile"
    return match.group(1)


#: The arguments of `make sample`, the command that made sample/ (its --out is the test's).
MAKE_SAMPLE = _generate_archive_arguments(_make_recipe("sample"))
SAMPLE_ARGS = MAKE_SAMPLE[MAKE_SAMPLE.index("--out") + 2 :]
KEY = re.compile(
    r"^(\d{4})/(\d{2})/(\d{2})/(\d{2})/stripe-events-archive-1-"
    r"(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-"
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}(\.gz)?$"
)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _split(body: bytes) -> tuple[str, list[bytes]]:
    """Records of one object and its style: newline-delimited or concatenated."""
    if body.endswith(b"\n"):
        return "newline", body[:-1].split(b"\n")
    text, pos, out = body.decode(), 0, []
    decoder = json.JSONDecoder()
    while pos < len(text):
        _, end = decoder.raw_decode(text, pos)
        out.append(text[pos:end].encode())
        pos = end
    return "concatenated", out


def _classify(record: bytes) -> tuple[str, dict[str, Any] | None]:
    try:
        value = json.loads(record)
    except ValueError:
        return ("truncated_json" if record.startswith(b'{"version"') else "not_json"), None
    if not isinstance(value, dict) or "detail" not in value:
        return "not_an_envelope", None
    if "id" not in value["detail"]:
        return "detail_without_id", None
    return "envelope", value


class Written:
    """An archive written to disk and read back, record by record."""

    def __init__(self, out: Path, truth_path: Path) -> None:
        self.root = truth_path.parent
        self.truth = json.loads(truth_path.read_text())
        self.objects: list[tuple[str, str, bool, list[bytes]]] = []
        for key, body in _tree(out).items():
            if key.startswith("exports/"):
                continue
            gz = key.endswith(".gz")
            style, records = _split(gzip.decompress(body) if gz else body)
            self.objects.append((key, style, gz, records))
        self.exports = (out / "exports").glob("*.jsonl")
        self.envelopes: list[dict[str, Any]] = []
        self.malformed: Counter[str] = Counter()
        self.raw_envelopes: list[bytes] = []
        for _, _, _, records in self.objects:
            for record in records:
                kind, env = _classify(record)
                if env is None:
                    self.malformed[kind] += 1
                else:
                    self.envelopes.append(env)
                    self.raw_envelopes.append(record)
        self.events: dict[str, dict[str, Any]] = {
            e["detail"]["id"]: e["detail"] for e in self.envelopes
        }


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """The committed sample, regenerated from its command into a temporary folder."""
    out = tmp_path_factory.mktemp("sample") / "archive"
    assert ga.main(["--out", str(out), *SAMPLE_ARGS]) == 0
    return Written(out, out.parent / "truth.json")


def test_committed_sample_is_what_the_documented_command_writes(sample: Written) -> None:
    assert _tree(ROOT / "sample") == _tree(sample.root)


def test_make_sample_writes_into_sample_and_the_docs_show_its_command() -> None:
    assert MAKE_SAMPLE[: MAKE_SAMPLE.index("--out") + 2] == ["--out", "sample/archive"]
    assert "--payments" in SAMPLE_ARGS and "--seed" in SAMPLE_ARGS
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Sample and generator") :].split("```sh\n")[1]
    assert _generate_archive_arguments(section.split("```")[0]) == MAKE_SAMPLE
    docstring = ga.__doc__ or ""
    made_with = docstring[docstring.index("The committed sample was made with::") :]
    assert _generate_archive_arguments(made_with.split("\n\n")[1]) == MAKE_SAMPLE


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    trees = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        ga.write_archive(ga.generate(140, seed, hours=2), tmp_path / name / "archive")
        trees.append(_tree(tmp_path / name))
    assert trees[0] == trees[1]
    assert trees[0] != trees[2]


def test_keys_follow_the_firehose_pattern_and_the_oldest_record(sample: Written) -> None:
    for key, _, gz, records in sample.objects:
        m = KEY.match(key)
        assert m, key
        assert m.group(1, 2, 3, 4) == m.group(5, 6, 7, 8)
        assert (m.group(11) == ".gz") is gz
        times = [_classify(r)[1] for r in records]
        arrivals = [e["time"] for e in times if e is not None]
        stamp = "{}-{}-{}T{}:{}:{}Z".format(*m.group(5, 6, 7, 8, 9, 10))
        assert stamp <= min(arrivals)
        if times[0] is not None:
            # Records are in arrival order, so the first is the oldest.
            assert times[0]["time"] == stamp == min(arrivals)


def test_both_delimiting_styles_and_both_compressions_are_present(sample: Written) -> None:
    styles = Counter(style for _, style, _, _ in sample.objects)
    gzipped = Counter(gz for _, _, gz, _ in sample.objects)
    archive = sample.truth["archive"]
    assert styles == {
        "newline": archive["newline_objects"],
        "concatenated": archive["concatenated_objects"],
    }
    assert gzipped == {True: archive["gzip_objects"], False: archive["plain_objects"]}
    assert min(styles.values()) > 10 and min(gzipped.values()) > 10


def test_every_envelope_is_an_eventbridge_envelope_of_a_stripe_event(sample: Written) -> None:
    for env in sample.envelopes:
        detail = env["detail"]
        assert detail["id"].startswith("evt_")
        assert env["version"] == "0"
        assert env["detail-type"] == detail["type"]
        assert re.fullmatch(r"aws\.partner/stripe\.com/ed_(test_)?\w+", env["source"])
        assert env["resources"] == ["arn:aws:events:eu-west-1::event-source/" + env["source"]]
        assert ("ed_test_" in env["source"]) is (not detail["livemode"])
        assert re.fullmatch(r"\d{12}", env["account"])
        if detail["object"] == "event":
            assert isinstance(detail["created"], int)
        else:
            assert detail["object"] == "v2.core.event"
            assert "data" not in detail and detail["related_object"]["id"]


def test_malformed_records_are_counted_as_the_truth_says(sample: Written) -> None:
    assert dict(sample.malformed) == sample.truth["counts"]["malformed"]
    assert sum(len(r) for _, _, _, r in sample.objects) == sample.truth["counts"]["records"]


def test_duplicates_redeliveries_and_replays_are_counted_as_the_truth_says(
    sample: Written,
) -> None:
    deliveries = sample.truth["counts"]["deliveries"]
    envelope_ids = Counter(env["id"] for env in sample.envelopes)
    assert sum(n - 1 for n in envelope_ids.values()) == deliveries["firehose_duplicate"]
    replays = {env["id"] for env in sample.envelopes if "replay-name" in env}
    assert len(replays) == deliveries["replay"]
    assert len(sample.events) == sample.truth["counts"]["distinct_events"]
    assert len(envelope_ids) == deliveries["original"] + deliveries["redelivery"] + len(replays)


@pytest.mark.parametrize(
    ("before_2022_11_15", "shape"),
    [(True, "charges list"), (False, "latest_charge id")],
    ids=["before-2022-11-15", "from-2022-11-15"],
)
def test_payment_intent_shape_follows_the_api_version(
    sample: Written, before_2022_11_15: bool, shape: str
) -> None:
    intents = [
        e["data"]["object"]
        for e in sample.events.values()
        if e["type"] == "payment_intent.succeeded"
        and (e["api_version"] < ga.LATEST_CHARGE_SINCE) is before_2022_11_15
    ]
    assert len(intents) > 20, shape
    for pi in intents:
        if before_2022_11_15:
            assert "latest_charge" not in pi
            assert pi["charges"]["object"] == "list"
            assert [c["id"] for c in pi["charges"]["data"]][0].startswith(("ch_", "py_"))
        else:
            assert "charges" not in pi
            assert pi["latest_charge"].startswith(("ch_", "py_"))


@pytest.mark.parametrize("basil", [True, False], ids=["basil", "before-basil"])
def test_basil_removes_charge_invoice(sample: Written, basil: bool) -> None:
    charges = [
        e["data"]["object"]
        for e in sample.events.values()
        if e["type"].startswith("charge.")
        and e["data"]["object"]["object"] == "charge"
        and (e["api_version"] >= ga.BASIL_SINCE) is basil
    ]
    assert len(charges) > 20
    assert all(("invoice" in c) is not basil for c in charges)


def test_amounts_are_integers_valid_for_their_currency(sample: Written) -> None:
    seen: Counter[str] = Counter()
    for event in sample.events.values():
        obj = event.get("data", {}).get("object", {})
        for key in ("amount", "amount_total", "amount_refunded"):
            if obj.get(key) is None or obj.get("currency") is None:
                continue
            assert isinstance(obj[key], int) and obj[key] >= 0
            assert obj["currency"] == obj["currency"].lower()
            assert obj["currency"] in ga.CURRENCY_EXPONENTS
            if ga.CURRENCY_EXPONENTS[obj["currency"]] == 3:
                assert obj[key] % 10 == 0, (event["id"], key)
            seen[obj["currency"]] += 1
    assert seen["jpy"] > 0 and seen["kwd"] > 0
    for payment in sample.truth["payments"]:
        assert payment["currency"] == payment["currency"].upper()
        assert 0 <= payment["refunded_total_minor"] <= payment["amount_minor"]


def test_the_stripe_sdk_accepts_every_event(sample: Written) -> None:
    for detail in sample.events.values():
        if detail["object"] == "event":
            event = stripe.Event.construct_from(detail, "sk_test_x")
            assert event.id == detail["id"] and event.type == detail["type"]


def test_every_required_scenario_is_in_the_sample(sample: Written) -> None:
    features = sample.truth["counts"]["features"]
    assert {s: features.get(s, 0) >= 3 for s in ga.REQUIRED_SCENARIOS} == {
        s: True for s in ga.REQUIRED_SCENARIOS
    }
    assert sample.truth["counts"]["events_by_type"]["checkout.session.expired"] > 0


def _by_object(sample: Written) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for env in sample.envelopes:
        detail = env["detail"]
        obj = detail.get("data", {}).get("object", {})
        for key in ("id", "charge", "payment_intent", "latest_charge"):
            if isinstance(obj.get(key), str):
                out.setdefault(obj[key], []).append((env["time"], detail))
    return out


def test_truth_agrees_with_the_events(sample: Written) -> None:
    index = _by_object(sample)
    for p in sample.truth["payments"]:
        sessions = [
            d for _, d in index[p["checkout_session_id"]] if d["type"].startswith("checkout")
        ]
        session = sessions[0]["data"]["object"]
        assert (session["amount_total"], session["currency"].upper()) == (
            p["amount_minor"],
            p["currency"],
        )
        assert session["payment_intent"] == p["payment_intent_id"]
        assert sessions[0]["livemode"] is p["livemode"]
        metadata_identity = session["metadata"].get("identityId")
        if p["identity_id"] is None:
            assert metadata_identity is None and session["client_reference_id"] is None
        elif p["identity_source"] == "client_reference_id":
            assert metadata_identity is None
            assert session["client_reference_id"] == p["identity_id"]
        else:
            assert metadata_identity == p["identity_id"]
        features = set(p["features"])
        if "charge_never_arrives" in features:
            assert p["charge_id"] is None and p["card_country"] is None
        if "only_payment_intent" in features:
            types = {d["type"] for _, d in index[p["charge_id"]]}
            assert types == {"payment_intent.succeeded"}
            assert p["card_country"] is None
        if "async_failure" in features:
            assert p["status"] == "Failed" and p["charge_id"].startswith("py_")
        if "full_refund" in features or "partial_then_full_refund" in features:
            assert p["status"] == "Refunded"
            assert p["refunded_total_minor"] == p["amount_minor"]
        if "partial_refund" in features:
            assert p["status"] == "Paid"
            assert 0 < p["refunded_total_minor"] < p["amount_minor"]


def test_refunds_are_cumulative_with_the_previous_value(sample: Written) -> None:
    index = _by_object(sample)
    for p in sample.truth["payments"]:
        # Redeliveries repeat an event; each Stripe event counts once.
        events = {d["id"]: d for _, d in index.get(p["charge_id"] or "", [])}.values()
        refunded = sorted(
            (d["created"], d["data"]["object"]["amount_refunded"], d["data"]["previous_attributes"])
            for d in events
            if d["type"] == "charge.refunded"
        )
        previous = 0
        for _, cumulative, prev in refunded:
            assert prev["amount_refunded"] == previous
            previous = cumulative
        assert previous == p["refunded_total_minor"]


@pytest.mark.parametrize(
    ("feature", "first", "then"),
    [
        ("refund_before_payment", "charge.refunded", "checkout.session.completed"),
        ("charge_before_session", "charge.succeeded", "checkout.session.completed"),
        ("session_before_charge", "checkout.session.completed", "charge.succeeded"),
    ],
    ids=["refund-before-payment", "charge-before-session", "session-before-charge"],
)
def test_reordered_scenarios_arrive_in_that_order(
    sample: Written, feature: str, first: str, then: str
) -> None:
    index = _by_object(sample)
    payments = [p for p in sample.truth["payments"] if feature in p["features"]]
    assert payments
    for p in payments:
        first_arrival: dict[str, tuple[str, str]] = {}
        for time, d in index[p["payment_intent_id"]] + index[p["checkout_session_id"]]:
            if d["id"] not in first_arrival or time < first_arrival[d["id"]][0]:
                first_arrival[d["id"]] = (time, d["type"])
        times: dict[str, list[str]] = {}
        for time, type_ in first_arrival.values():
            times.setdefault(type_, []).append(time)
        # First arrivals only (redeliveries come later by design). Envelope times are
        # whole seconds; reordering delays are minutes.
        assert max(times[first]) < min(times[then]), p["checkout_session_id"]


def test_async_payments_settle_two_days_later_when_the_scenario_says(sample: Written) -> None:
    index = _by_object(sample)
    payments = [p for p in sample.truth["payments"] if "async_success_two_days" in p["features"]]
    assert payments
    for p in payments:
        created = {d["type"]: d["created"] for _, d in index[p["checkout_session_id"]]}
        delay = (
            created["checkout.session.async_payment_succeeded"]
            - created["checkout.session.completed"]
        )
        assert 2 * 86_400 <= delay <= 2 * 86_400 + 3_602
        completed = next(
            d
            for _, d in index[p["checkout_session_id"]]
            if d["type"] == "checkout.session.completed"
        )
        assert completed["data"]["object"]["payment_status"] == "unpaid"


def test_declined_card_then_debit_names_the_card_first_and_the_debit_last(
    sample: Written,
) -> None:
    index = _by_object(sample)
    payments = [p for p in sample.truth["payments"] if "declined_then_debit" in p["features"]]
    assert {p["status"] for p in payments} == {"Paid", "Failed"}
    for p in payments:
        events = {d["id"]: d for _, d in index[p["payment_intent_id"]]}.values()
        completed = next(
            d["created"]
            for _, d in index[p["checkout_session_id"]]
            if d["type"] == "checkout.session.completed"
        )
        failed = sorted(
            (d["created"], d["type"], d["data"]["object"])
            for d in events
            if d["type"] in ("charge.failed", "payment_intent.payment_failed")
        )
        named = [
            obj["last_payment_error"]["charge"] if "last_payment_error" in obj else obj["id"]
            for _, _, obj in failed
        ]
        card = [c for _, t, c in failed if t == "charge.failed" and c["id"].startswith("ch_")]
        assert len(card) == 1 and card[0]["payment_method_details"]["type"] == "card"
        assert failed[0][0] < completed
        assert named[:2] == [card[0]["id"]] * 2
        if p["status"] == "Failed":
            assert named[2:] == [p["charge_id"]] * 2 and failed[2][0] > completed
        else:
            assert named[2:] == []


def test_exports_are_bare_events_some_duplicating_the_stream(sample: Written) -> None:
    (export,) = list(sample.exports)
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert all(line["object"] == "event" and "detail" not in line for line in lines)
    counts = sample.truth["counts"]["exports"]
    assert len(lines) == counts["lines"]
    assert sum(line["id"] in sample.events for line in lines) == counts["duplicates_of_archive"]
    for line in lines:
        if line["id"] in sample.events:
            assert line == sample.events[line["id"]]


def test_records_come_in_arrival_order() -> None:
    archive = ga.generate(150, 11, hours=1)
    arrivals = [r.arrival_ms for r in archive.records()]
    assert arrivals == sorted(arrivals)
    assert len(list(archive.envelopes(include_malformed=False))) == len(arrivals) - sum(
        archive.truth.counts["malformed"].values()
    )


def test_cli_documents_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ga.main(["--help"])
    text = capsys.readouterr().out
    for flag in (
        "--out",
        "--payments",
        "--seed",
        "--start",
        "--hours",
        "--truth",
        "--stream",
        "--buffer_seconds",
        "--force",
    ):
        assert flag in text


SMALL_ARGS = ["--payments", "5", "--seed", "7", "--hours", "1"]


def test_a_non_empty_out_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "archive"
    out.mkdir()
    (out / "earlier.gz").write_bytes(b"from another run")

    assert ga.main(["--out", str(out), *SMALL_ARGS]) == 2

    error = capsys.readouterr().err
    assert error == (
        f"python -m tools.generate_archive: error: --out {out} is not empty: the archive would "
        "mix with what is there and its truth would not match; give an empty folder, or "
        "--force to delete its contents\n"
    )
    assert [p.name for p in out.iterdir()] == ["earlier.gz"]
    assert not (tmp_path / "truth.json").exists()


def test_force_replaces_what_out_held(tmp_path: Path) -> None:
    fresh, reused = tmp_path / "fresh" / "archive", tmp_path / "reused" / "archive"
    assert ga.main(["--out", str(fresh), *SMALL_ARGS]) == 0
    assert ga.main(["--out", str(reused), "--payments", "9", "--seed", "8"]) == 0
    (reused / "stray.txt").write_text("left by hand")

    assert ga.main(["--out", str(reused), "--force", *SMALL_ARGS]) == 0

    assert _tree(reused.parent) == _tree(fresh.parent)


def test_generate_rejects_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ga.generate(10, 1, start=datetime(2025, 1, 1))
    assert ga.generate(10, 1, start=datetime(2025, 1, 1, tzinfo=UTC)).truth.counts["payments"] == 10

//! Writes the seed corpus of every fuzz target under `fuzz/corpus/<target>/` from real data:
//! the golden PCS vectors, outcome-log segments written by flk-outcome-log, a 300-entry audit
//! log built by flk-tlog (its tiles, checkpoint and proof bundles), `.ots` files built with
//! flk-anchor's own format code, the services' default configs rendered by flk-runtime,
//! svc-tiering's record, catalog and pack encodings, and replication batches of records that
//! svc-verify decided. The TSA seeds come from `fuzz/data/make_tsa.sh`. Run from `fuzz/`:
//! `cargo run --example seeds`; `cargo run --example seeds -- crr_ship` writes only the
//! `crr_ship` seeds, from the `replication` seeds already in `corpus/replication/` (so that the
//! other targets' seeds, whose records carry the time they were decided, stay as they are).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flk_anchor::ots::{Attestation, DetachedTimestampFile, Op, Timestamp};
use flk_fuzz::{
    ANCHOR_DIGEST, LOG_ENTRIES, audit_entry, feed_record, golden_pcs_json, log_signer,
    outcome_log_segments, tlog_fixture,
};
use flk_proto::v1;
use flk_tlog::tile::encode_bundle;
use flk_tlog::{EventEntry, EventKind, LogEntry};
use prost::Message as _;
use svc_tiering::Key;
use svc_tiering::cold::{ColdStore, PackItem};
use svc_tiering::record::{ColdLoc, RecordMeta, Tier};

struct Corpus(PathBuf);

impl Corpus {
    fn put(&self, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
        let dir = self.0.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let c = Corpus(root);
    if std::env::args().nth(1).as_deref() == Some("crr_ship") {
        crr_ship(&c);
        return;
    }
    let golden = golden_pcs_json();

    // PCS JSON: every fourth golden vector (they cover every reason code), kept compact.
    for (i, json) in golden.iter().enumerate().step_by(4) {
        c.put("pcs_json", &format!("golden-{i:03}.json"), json);
    }

    // Protobuf: the golden PCSs as wire messages, in submissions and feed records.
    for (i, json) in golden.iter().enumerate().step_by(16) {
        let Ok(pcs) = flk_core::parse_pcs(json) else {
            continue;
        };
        let wire = v1::Pcs::from(&pcs);
        c.put("proto", &format!("pcs-{i:03}.bin"), wire.encode_to_vec());
        let submit = v1::SubmitRequest {
            tenant_id: "acme".into(),
            body: Some(v1::submit_request::Body::Pcs(wire.clone())),
        };
        c.put(
            "proto",
            &format!("submit-pcs-{i:03}.bin"),
            submit.encode_to_vec(),
        );
        let submit = v1::SubmitRequest {
            tenant_id: String::new(),
            body: Some(v1::submit_request::Body::PcsJson(json.clone().into())),
        };
        c.put(
            "proto",
            &format!("submit-json-{i:03}.bin"),
            submit.encode_to_vec(),
        );
        let mut rec = feed_record(i as u64 + 1, json);
        if i % 32 == 0 {
            rec.request_pcs = Some(wire);
            rec.request_json.clear();
        }
        c.put("proto", &format!("feed-{i:03}.bin"), rec.encode_to_vec());
    }

    // Outcome log: real segments, whole and as the base of a damaged tail.
    let segs = outcome_log_segments();
    c.put(
        "outcome_log",
        "whole-segment",
        [&[0u8][..], &segs[0].1].concat(),
    );
    c.put("outcome_log", "clean-tail", [1u8]);
    let second = &segs[1].1;
    c.put(
        "outcome_log",
        "torn-record",
        [&[1u8][..], &second[24..60]].concat(),
    );
    c.put("outcome_log", "second-segment", [2u8, 0, 0]);
    c.put("outcome_log", "second-segment-record", [2u8, 40, 0, 0xff]);

    // Audit log: every resource of the fixture log, unchanged (the fuzzer alters them), a
    // small one replaced whole, and the checkpoint.
    let (log, snap) = tlog_fixture();
    let n = snap.tiles.len();
    for i in 0..=n {
        c.put(
            "tlog_tiles",
            &format!("resource-{i:02}"),
            [i as u8, 1, 0, 0],
        );
    }
    if let Some((i, (_, bytes))) = snap
        .tiles
        .iter()
        .enumerate()
        .min_by_key(|(_, (_, b))| b.len())
    {
        c.put(
            "tlog_tiles",
            "replace-smallest",
            [&[i as u8, 0][..], bytes].concat(),
        );
    }
    c.put(
        "tlog_tiles",
        "replace-checkpoint",
        [&[n as u8, 0][..], log.checkpoint_note().as_bytes()].concat(),
    );

    // Notes and keys.
    c.put("tlog_checkpoint", "checkpoint.note", log.checkpoint_note());
    c.put(
        "tlog_checkpoint",
        "verifier.key",
        log_signer().verifier().key_string(),
    );
    c.put("tlog_checkpoint", "body", log.checkpoint().body());

    // Entries, bundles and tile rows.
    let decision = audit_entry(7).encode().expect("encode");
    let event = LogEntry::Event(EventEntry {
        kind: EventKind::from_code(1).expect("event kind 1"),
        recorded_at_unix_ms: 1_735_689_600_000,
        body: r#"{"chosen":"rfc3161"}"#.into(),
    })
    .encode()
    .expect("encode");
    c.put("tlog_entry", "decision", &decision);
    c.put("tlog_entry", "event", &event);
    let bundle = encode_bundle([decision.as_slice(), event.as_slice()]).expect("bundle");
    c.put("tlog_entry", "bundle", bundle);
    c.put(
        "tlog_entry",
        "tile-row",
        [[0x5au8; 32], [0xa5; 32], [1; 32]].concat(),
    );

    // Proof bundles as `GET /v1/audit/proof/{pcs_id}` renders them.
    let checkpoint = v1::AuditCheckpoint {
        origin: flk_fuzz::LOG_ORIGIN.into(),
        size: log.size(),
        root_hash: log.checkpoint().root_hash.to_vec(),
        verifier_key: log_signer().verifier().key_string(),
        note: log.checkpoint_note().into(),
        decisions: None,
    };
    for index in [0, 150, LOG_ENTRIES - 1] {
        let proof = v1::InclusionProof {
            leaf_index: index,
            tree_size: log.size(),
            entry: log.entry(index).expect("entry"),
            proof: log
                .inclusion_proof(index, log.size())
                .expect("proof")
                .iter()
                .map(|h| h.to_vec())
                .collect(),
            checkpoint: Some(checkpoint.clone()),
        };
        let json = flk_proto::audit::inclusion_json(&proof);
        c.put(
            "proof_bundle",
            &format!("entry-{index}.json"),
            serde_json::to_vec(&json).expect("json"),
        );
    }

    // OpenTimestamps: pending only, and upgraded to a Bitcoin attestation through the ops
    // calendars use.
    let mut pending = Timestamp::new(ANCHOR_DIGEST.to_vec());
    pending
        .add_op(Op::Append(vec![0xaa; 16]))
        .add_op(Op::Sha256)
        .attestations
        .insert(Attestation::Pending {
            uri: "https://calendar.example/".into(),
        });
    let ots = |t: &Timestamp| {
        DetachedTimestampFile {
            timestamp: t.clone(),
        }
        .serialize()
        .expect("serialize ots")
    };
    c.put("ots", "pending.ots", ots(&pending));
    let mut upgraded = pending.clone();
    let tip = upgraded
        .add_op(Op::Prepend(vec![0x01; 8]))
        .add_op(Op::Sha256);
    tip.add_op(Op::Reverse)
        .attestations
        .insert(Attestation::Bitcoin { height: 840_000 });
    tip.add_op(Op::Hexlify)
        .attestations
        .insert(Attestation::Pending {
            uri: "https://b.calendar.example/".into(),
        });
    c.put("ots", "upgraded.ots", ots(&upgraded));

    // Configs: the services' defaults as flk-runtime renders them, and a tenants file.
    let verify = flk_runtime::config::to_toml(&svc_verify::config::VerifyConfig::default());
    c.put(
        "config",
        "verify.toml",
        [&[0u8][..], verify.as_bytes()].concat(),
    );
    let tiering = flk_runtime::config::to_toml(&svc_tiering::TieringConfig::default());
    c.put(
        "config",
        "tiering.toml",
        [&[3u8][..], tiering.as_bytes(), b"\0s3://bucket/cold"].concat(),
    );
    let tenants = r#"[[tenant]]
id = "acme"
rate_limit_per_sec = 5.0
burst = 10.0
daily_quota = 100000
[[tenant.keys]]
id = "k1"
algorithm = "hmac"
secret = "testsecret"
mode = "digest"
[[tenant.keys]]
id = "k2"
algorithm = "ed25519"
public_key = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ="
not_before = "2026-01-01T00:00:00Z"
[[tenant.api_tokens]]
id = "reader"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
not_after = "2027-01-01T00:00:00Z"
[[tenant.api_tokens]]
id = "from-env"
token_env = "ACME_TOKEN"
[[tenant]]
id = "beta"
signing = false
"#;
    c.put(
        "config",
        "tenants.toml",
        [&[1u8][..], tenants.as_bytes(), b"\0envtoken"].concat(),
    );

    // svc-tiering: a pack written by ColdStore, a record blob, a catalog entry, a key.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let cold =
        ColdStore::open(&format!("file://{}", dir.path().display()), |_| None).expect("cold store");
    let blobs: Vec<Vec<u8>> = golden
        .iter()
        .take(3)
        .enumerate()
        .filter_map(|(i, json)| {
            let rec = feed_record(i as u64 + 1, json);
            svc_tiering::record::StoredRecord::from_feed(&rec).map(|r| r.encode())
        })
        .collect();
    let items: Vec<PackItem> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| PackItem {
            key: Key::new("acme", format!("{i:064x}")),
            blob: Arc::new(b.clone()),
        })
        .collect();
    rt.block_on(cold.write_pack("seed.pack", &items))
        .expect("write pack");
    let pack = std::fs::read(dir.path().join("packs/seed.pack")).expect("read pack");
    c.put("tiering", "pack", pack);
    if let Some(b) = blobs.first() {
        c.put("tiering", "blob", b);
    }
    let meta = RecordMeta {
        tier: Tier::Cold,
        entered_ms: 1_735_689_600_000,
        last_read_ms: 0,
        decided_ms: 1_735_689_500_000,
        size: 420,
        cold: Some(ColdLoc {
            pack: "seed.pack".into(),
            offset: 0,
            len: 300,
        }),
        pending: None,
    };
    c.put("tiering", "catalog-entry", meta.encode());
    c.put("tiering", "key", Key::new("acme", "0".repeat(64)).encode());

    replication(&c);
    crr_ship(&c);
}

/// The origin regions of the replication seeds (the fuzzed engine is `REPLICA_REGION`).
const ORIGIN: &str = "us-east";
const OTHER_ORIGIN: &str = "ap-south";

/// Replication: `ShipBatch`es (and `ApplyReplicatedRequest`s) of real feed records, decided by
/// svc-verify in two origin regions from golden vectors signed with their keys (so that they
/// verify in the fuzzed region), a conflicting version of one key, a reconciliation, a record
/// older than its tenant's dedup TTL, and broken records of every refusal reason.
fn replication(c: &Corpus) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let verify_doc: serde_json::Value = serde_json::from_str(include_str!(
        "../../flk-core/tests/data/verify_vectors.json"
    ))
    .expect("golden vectors");
    let vectors = verify_doc["vectors"].as_array().expect("vectors");
    // One vector of each (outcome, reason) of the golden set, in file order.
    let mut seen = std::collections::BTreeSet::new();
    let classes: Vec<&serde_json::Value> = vectors
        .iter()
        .filter(|v| {
            seen.insert((
                v["expect"]["outcome"].to_string(),
                v["expect"]["reason_code"].to_string(),
            ))
        })
        .collect();
    let accepted: Vec<&serde_json::Value> = vectors
        .iter()
        .filter(|v| v["expect"]["reason_code"] == "ok")
        .map(|v| &v["pcs"])
        .collect();
    let json = |pcs: &serde_json::Value| {
        svc_verify::Body::Json(serde_json::to_vec(pcs).expect("json").into())
    };
    let signing_doc: serde_json::Value = serde_json::from_str(include_str!(
        "../../flk-core/tests/data/signing_vectors.json"
    ))
    .expect("signing vectors");
    let mut ed25519 = signing_doc["vectors"][0]["pcs"].clone();
    ed25519["sig"] = signing_doc["vectors"][0]["sig_ed25519_b64"].clone();

    let mut here: Vec<(&str, svc_verify::Body)> = classes
        .iter()
        .map(|v| (flk_proto::DEFAULT_TENANT, json(&v["pcs"])))
        .collect();
    let structured =
        flk_core::parse_pcs(&serde_json::to_vec(accepted[1]).expect("json")).expect("golden pcs");
    here.push((
        flk_proto::DEFAULT_TENANT,
        svc_verify::Body::Structured(Box::new(v1::Pcs::from(&structured))),
    ));
    here.push((flk_proto::DEFAULT_TENANT, json(&ed25519)));
    here.push(("acme", json(accepted[2])));
    let ours = rt.block_on(decided(dir.path(), ORIGIN, here));

    // The first accepted vector's key decided otherwise in the other origin: same pcs_id,
    // another budget, signed again.
    let k = classes
        .iter()
        .position(|v| v["expect"]["reason_code"] == "ok")
        .expect("an accepted vector");
    let first = &classes[k]["pcs"];
    let mut other = first.clone();
    other["budget"] = serde_json::json!(first["budget"].as_f64().expect("budget") + 0.125);
    let parsed = flk_core::parse_pcs(&serde_json::to_vec(&other).expect("json")).expect("pcs");
    let signer = flk_core::SigningMaterial::hmac(b"testsecret", flk_core::HmacMode::Digest)
        .expect("hmac key");
    other["sig"] = signer.sign_b64(&flk_core::canonicalize(&parsed)).into();
    let theirs = rt.block_on(decided(
        dir.path(),
        OTHER_ORIGIN,
        vec![(flk_proto::DEFAULT_TENANT, json(&other))],
    ));

    let ship = |name: &str, records: Vec<v1::FeedRecord>| {
        let last_seq = records.iter().map(|r| r.seq).max().unwrap_or(7);
        let batch = v1::ShipBatch {
            source: ORIGIN.into(),
            target: flk_fuzz::REPLICA_REGION.into(),
            records,
            last_seq,
        };
        c.put("replication", name, batch.encode_to_vec());
    };
    for (i, rec) in ours.iter().enumerate() {
        ship(&format!("ship-{i:02}"), vec![rec.clone()]);
    }
    ship("ship-all", ours.clone());
    ship("ship-empty", Vec::new());
    let (a, b) = (ours[k].clone(), theirs[0].clone());
    assert_eq!(
        a.pcs_id, b.pcs_id,
        "the conflicting version has the same key"
    );
    ship("ship-conflict", vec![a.clone(), b.clone()]);
    ship("ship-conflict-reversed", vec![b.clone(), a.clone()]);
    let mut reconciled = b.clone();
    reconciled.kind = v1::RecordKind::Reconciled as i32;
    ship("ship-reconciled", vec![reconciled]);

    // The `acme` record (14-day TTL) moved 30 days back: logged, not indexed.
    let acme = ours.last().expect("acme record").clone();
    let mut expired = acme.clone();
    expired.decided_at_unix_ms -= 30 * 24 * 3600 * 1000;
    if let Some(o) = expired.outcome.as_mut() {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(expired.decided_at_unix_ms) * 1_000_000,
        )
        .expect("time");
        o.received_at = at
            .format(&time::format_description::well_known::Rfc3339)
            .expect("rfc3339");
    }
    ship("ship-expired", vec![expired, acme]);

    // Broken records, one per refusal reason, and a batch mixing them with valid ones.
    let broken = |f: &dyn Fn(&mut v1::FeedRecord)| {
        let mut r = ours[1].clone();
        f(&mut r);
        r
    };
    let mut bad_sig = a.clone();
    let mut body: serde_json::Value =
        serde_json::from_slice(&bad_sig.request_json).expect("request json");
    body["sig"] = signer.sign_b64(&flk_core::canonicalize(&structured)).into();
    bad_sig.request_json = serde_json::to_vec(&body).expect("json");
    let refused = vec![
        bad_sig.clone(),
        broken(&|r| r.canonical_digest[0] ^= 1),
        broken(&|r| {
            r.pcs_id = "0".repeat(64);
            if let Some(o) = r.outcome.as_mut() {
                o.pcs_id = "0".repeat(64);
            }
        }),
        broken(&|r| {
            r.tenant_id = "nobody".into();
            if let Some(o) = r.outcome.as_mut() {
                o.tenant_id = "nobody".into();
            }
        }),
        broken(&|r| r.decided_at_unix_ms += 5),
        broken(&|r| r.region.clear()),
        broken(&|r| r.kind = v1::RecordKind::CrrEvent as i32),
        broken(&|r| r.request_json.truncate(r.request_json.len() / 2)),
        broken(&|r| r.request_json.clear()),
        broken(&|r| r.outcome = None),
    ];
    ship("ship-refused", refused);
    ship(
        "ship-mixed",
        vec![ours[2].clone(), bad_sig, ours[3].clone()],
    );

    let request = |name: &str, records: Vec<v1::FeedRecord>, replace: bool| {
        let req = v1::ApplyReplicatedRequest { records, replace };
        c.put("replication", name, req.encode_to_vec());
    };
    request("apply-first-write", vec![a.clone(), b.clone()], false);
    request("apply-replace", vec![b, ours[4].clone()], true);
    request("apply-replace-back", vec![a], true);
}

/// Submits `submissions` to a fresh svc-verify of `region`; the feed records of its log, with
/// their seq, as svc-crr ships them.
async fn decided(
    dir: &Path,
    region: &str,
    submissions: Vec<(&str, svc_verify::Body)>,
) -> Vec<v1::FeedRecord> {
    let service = flk_fuzz::open_verify(&dir.join(region), region)
        .await
        .expect("open svc-verify");
    for (tenant, body) in submissions {
        service
            .engine
            .submit(tenant, body)
            .await
            .expect("golden submission");
    }
    let records: Vec<v1::FeedRecord> = service
        .engine
        .log()
        .read_from(1)
        .map(|r| {
            let (seq, bytes) = r.expect("read log");
            let mut rec = v1::FeedRecord::decode(bytes.as_ref()).expect("feed record");
            rec.seq = seq;
            rec
        })
        .collect();
    records
}

/// svc-crr's receiving side (`crr_ship`): sequences of length-delimited `ShipBatch`es built
/// from the `replication` seeds (records decided in `ORIGIN` and `OTHER_ORIGIN`): a valid
/// batch, the same batch twice, batches for another region, from a region that is not a peer,
/// carrying another region's records, empty ones, a watermark going back, refused and expired
/// records, a conflict between the two peers, and all of it in one input.
fn crr_ship(c: &Corpus) {
    let read = |name: &str| {
        let path = c.0.join("replication").join(name);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        v1::ShipBatch::decode(bytes.as_slice()).expect("a ShipBatch seed")
    };
    let all = read("ship-all").records;
    let conflict = read("ship-conflict").records;
    let (ours, theirs) = (conflict[0].clone(), conflict[1].clone());
    assert_eq!(ours.region, ORIGIN, "ship-conflict starts with our record");
    assert_eq!(theirs.region, OTHER_ORIGIN, "then the other origin's");
    let batch =
        |source: &str, target: &str, records: Vec<v1::FeedRecord>, last_seq: u64| v1::ShipBatch {
            source: source.into(),
            target: target.into(),
            records,
            last_seq,
        };
    let here = flk_fuzz::REPLICA_REGION;
    let last = |records: &[v1::FeedRecord]| records.iter().map(|r| r.seq).max().unwrap_or(0);
    let valid = batch(ORIGIN, here, all.clone(), last(&all));
    let wrong_target = batch(ORIGIN, OTHER_ORIGIN, all.clone(), last(&all));
    let relabelled: Vec<v1::FeedRecord> = all
        .iter()
        .cloned()
        .map(|mut r| {
            r.region = "sa-east".into();
            r
        })
        .collect();
    let unknown_source = batch("sa-east", here, relabelled, last(&all));
    let wrong_origin = batch(OTHER_ORIGIN, here, all.clone(), last(&all));
    let empty = batch(ORIGIN, here, Vec::new(), 7);

    let put = |name: &str, batches: &[v1::ShipBatch]| {
        let bytes: Vec<u8> = batches
            .iter()
            .flat_map(|b| b.encode_length_delimited_to_vec())
            .collect();
        c.put("crr_ship", name, bytes);
    };
    put("valid", std::slice::from_ref(&valid));
    put("duplicate", &[valid.clone(), valid.clone()]);
    let few = all[..3].to_vec();
    put(
        "wrong-target",
        &[wrong_target, batch(ORIGIN, "", few.clone(), last(&few))],
    );
    put(
        "unknown-source",
        &[unknown_source, batch("", here, few.clone(), last(&few))],
    );
    put(
        "wrong-origin",
        &[
            wrong_origin,
            batch(ORIGIN, here, conflict.clone(), last(&conflict)),
        ],
    );
    put(
        "empty",
        &[empty.clone(), batch(OTHER_ORIGIN, here, Vec::new(), 0)],
    );
    put(
        "watermark",
        &[
            valid.clone(),
            batch(ORIGIN, here, all[..1].to_vec(), 1),
            batch(OTHER_ORIGIN, here, vec![theirs.clone()], theirs.seq),
            batch(ORIGIN, here, Vec::new(), last(&all) + 40),
        ],
    );
    let refused = read("ship-refused").records;
    put(
        "refused",
        &[batch(ORIGIN, here, refused.clone(), last(&refused))],
    );
    let expired = read("ship-expired").records;
    put(
        "expired",
        &[batch(ORIGIN, here, expired.clone(), last(&expired))],
    );
    put(
        "conflict",
        &[
            batch(ORIGIN, here, vec![ours.clone()], ours.seq),
            batch(OTHER_ORIGIN, here, vec![theirs.clone()], theirs.seq),
        ],
    );
    // Smaller batches, so that this seed stays within the others' size.
    put(
        "mixed",
        &[
            batch(ORIGIN, here, few.clone(), last(&few)),
            batch(ORIGIN, OTHER_ORIGIN, few.clone(), last(&few)),
            batch("sa-east", here, few.clone(), last(&few)),
            batch(OTHER_ORIGIN, here, few.clone(), last(&few)),
            empty,
            batch(ORIGIN, here, few.clone(), last(&few)),
        ],
    );
}

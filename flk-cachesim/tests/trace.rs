//! The trace formats: round trips, libCacheSim's record layout and next-access times, and the
//! errors bad input gets (line and field for csv, byte offset for oracle-general).

use flk_cachesim::generator::{GenConfig, generate};
use flk_cachesim::trace::{
    Format, TraceError, read, read_csv, read_oracle_general, write_csv, write_oracle_general,
};

fn small() -> flk_cachesim::trace::Trace {
    generate(&GenConfig {
        seed: 5,
        requests: 3_000,
        days: 1.0,
        objects_per_tenant: 300,
        ..GenConfig::default()
    })
    .unwrap()
}

#[test]
fn csv_round_trips() {
    let t = small();
    let mut buf = Vec::new();
    write_csv(&t, &mut buf).unwrap();
    assert!(buf.starts_with(b"timestamp,tenant_id,key,size_bytes\n"));
    let back = read_csv(buf.as_slice()).unwrap();
    // Same requests by tenant name, key and size (ids are assigned in order of appearance).
    let view = |t: &flk_cachesim::trace::Trace| -> Vec<(f64, String, String, u64)> {
        t.requests
            .iter()
            .map(|r| {
                let key = t.keys[r.object as usize].clone();
                (
                    r.timestamp,
                    t.tenants[r.tenant as usize].clone(),
                    key,
                    r.size,
                )
            })
            .collect()
    };
    let (a, b) = (view(&t), view(&back));
    assert_eq!(a.len(), b.len());
    assert!(a == b, "csv round trip differs");
}

#[test]
fn csv_objects_are_tenant_and_key_pairs() {
    let csv = "timestamp,tenant_id,key,size_bytes\n0.5,a,k1,10\n1,b,k1,10\n2.25,a,k1,10\n";
    let t = read_csv(csv.as_bytes()).unwrap();
    let objs: Vec<u64> = t.requests.iter().map(|r| r.object).collect();
    assert_eq!(objs[0], objs[2]);
    assert_ne!(objs[0], objs[1]);
    assert_eq!(t.requests[2].timestamp, 2.25);
    assert_eq!(t.tenants, ["a", "b"]);
}

#[test]
fn oracle_general_layout_and_next_access_times() {
    let t = small();
    let mut buf = Vec::new();
    write_oracle_general(&t, &mut buf).unwrap();
    assert_eq!(buf.len(), 24 * t.requests.len());
    // Every record's next-access field, checked by a plain forward search.
    for (i, rec) in buf.chunks(24).enumerate() {
        let obj = u64::from_le_bytes(rec[4..12].try_into().unwrap());
        let size = u32::from_le_bytes(rec[12..16].try_into().unwrap());
        let next = i64::from_le_bytes(rec[16..24].try_into().unwrap());
        assert_eq!(obj, t.requests[i].object);
        assert_eq!(u64::from(size), t.requests[i].size);
        let want = t.requests[i + 1..]
            .iter()
            .position(|r| r.object == obj)
            .map_or(-1, |p| (i + 1 + p) as i64);
        assert_eq!(next, want, "record {i}");
    }
    let back = read_oracle_general(buf.as_slice()).unwrap();
    assert_eq!(back.requests.len(), t.requests.len());
    for (a, b) in back.requests.iter().zip(&t.requests) {
        assert_eq!(a.timestamp, b.timestamp.floor());
        assert_eq!((a.object, a.size), (b.object, b.size));
    }
}

#[test]
fn truncated_oracle_general_names_the_byte_offset() {
    let mut buf = Vec::new();
    write_oracle_general(&small(), &mut buf).unwrap();
    buf.truncate(24 * 10 + 7);
    let err = read(Format::OracleGeneral, buf.as_slice()).unwrap_err();
    assert!(
        matches!(
            err,
            TraceError::Truncated {
                offset: 240,
                len: 7
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("byte offset 240"), "{err}");
}

#[test]
fn bad_csv_lines_name_the_line_and_field() {
    let cases = [
        (
            "timestamp,tenant_id,key,size_bytes\n1,a,k,10\n2,a,k,ten\n",
            "line 3",
            "size_bytes",
        ),
        (
            "timestamp,tenant_id,key,size_bytes\nnow,a,k,10\n",
            "line 2",
            "timestamp",
        ),
        (
            "timestamp,tenant_id,key,size_bytes\n1,a,k,10\n2,,k,1\n",
            "line 3",
            "tenant_id",
        ),
        (
            "timestamp,tenant_id,key,size_bytes\n-1,a,k,10\n",
            "line 2",
            "timestamp",
        ),
        (
            "timestamp,tenant_id,key,size_bytes\n1,a,k,10\n2,a,k\n",
            "line 3",
            "expected 4 fields",
        ),
        (
            "time,tenant,key,size\n1,a,k,10\n",
            "header",
            "timestamp,tenant_id",
        ),
        ("", "header", ""),
    ];
    for (input, want1, want2) in cases {
        let err = read_csv(input.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains(want1) && err.contains(want2),
            "{input:?}: {err}"
        );
    }
}

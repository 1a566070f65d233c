//! Access traces: the `Request` every policy replays, and the readers and writers of the two
//! trace formats (`csv` and libCacheSim's binary `oracle-general`).
//!
//! * `csv`: a header `timestamp,tenant_id,key,size_bytes`, then one request a line; the
//!   timestamp is in seconds (fractional allowed). An object is the pair `(tenant_id, key)`.
//! * `oracle-general`: little-endian records of 24 bytes: `u32` timestamp (seconds), `u64`
//!   object id, `u32` size, `i64` virtual time (request index) of the object's next access,
//!   `-1` if none. An object is its id; the whole trace is one tenant.

use std::collections::HashMap;
use std::io::{Read, Write};

/// The header line a csv trace starts with.
pub const CSV_HEADER: [&str; 4] = ["timestamp", "tenant_id", "key", "size_bytes"];
/// Bytes per oracle-general record.
pub const ORACLE_GENERAL_RECORD_BYTES: usize = 24;

/// One request of a trace: the unit every policy and model consumes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// Seconds (any origin; only differences matter).
    pub timestamp: f64,
    /// Index into [`Trace::tenants`].
    pub tenant: u32,
    /// The object: unique per `(tenant, key)` in csv, the object id in oracle-general.
    pub object: u64,
    /// Bytes.
    pub size: u64,
}

/// A whole trace in request order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    pub requests: Vec<Request>,
    /// Tenant names, indexed by [`Request::tenant`].
    pub tenants: Vec<String>,
    /// Each object's key as read from a csv trace, indexed by [`Request::object`]; empty for
    /// oracle-general (whose object ids are the keys).
    pub keys: Vec<String>,
}

impl Trace {
    /// Seconds between the first and the last request of `requests[from..]` (0 if fewer than
    /// two).
    pub fn duration_secs(&self, from: usize) -> f64 {
        let part = &self.requests[from.min(self.requests.len())..];
        match (part.first(), part.last()) {
            (Some(a), Some(b)) => (b.timestamp - a.timestamp).max(0.0),
            _ => 0.0,
        }
    }
}

/// The supported trace formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    OracleGeneral,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "csv" => Ok(Format::Csv),
            "oracle-general" => Ok(Format::OracleGeneral),
            other => Err(format!(
                "unknown trace format {other:?} (csv or oracle-general)"
            )),
        }
    }
}

/// Why a trace could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("csv header must be `timestamp,tenant_id,key,size_bytes`, found `{found}`")]
    Header { found: String },
    #[error("line {line}: field `{field}`: {message}")]
    Field {
        line: u64,
        field: &'static str,
        message: String,
    },
    #[error("line {line}: {message}")]
    Line { line: u64, message: String },
    #[error(
        "truncated oracle-general record at byte offset {offset}: {len} of 24 bytes before the end of the file"
    )]
    Truncated { offset: u64, len: usize },
    #[error("oracle-general cannot hold {what} {value} (request {index})")]
    Unrepresentable {
        what: &'static str,
        value: String,
        index: usize,
    },
}

/// Reads a csv trace (see the module docs). Lines are numbered from 1 (the header).
pub fn read_csv(input: impl Read) -> Result<Trace, TraceError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut record = csv::StringRecord::new();
    let mut trace = Trace::default();
    let mut tenants: HashMap<String, u32> = HashMap::new();
    let mut objects: HashMap<(u32, String), u64> = HashMap::new();
    let mut line: u64 = 0;
    let mut header_seen = false;
    loop {
        let more = reader
            .read_record(&mut record)
            .map_err(|e| csv_error(e, line))?;
        if !more {
            break;
        }
        line = record.position().map_or(line + 1, |p| p.line());
        if !header_seen {
            header_seen = true;
            let found: Vec<&str> = record.iter().map(str::trim).collect();
            if found != CSV_HEADER {
                return Err(TraceError::Header {
                    found: found.join(","),
                });
            }
            continue;
        }
        if record.len() == 1 && record[0].trim().is_empty() {
            continue; // blank line
        }
        if record.len() != 4 {
            return Err(TraceError::Line {
                line,
                message: format!("expected 4 fields, found {}", record.len()),
            });
        }
        let timestamp: f64 = record[0].trim().parse().map_err(|_| TraceError::Field {
            line,
            field: "timestamp",
            message: format!("not a number: {:?}", &record[0]),
        })?;
        if !timestamp.is_finite() || timestamp < 0.0 {
            return Err(TraceError::Field {
                line,
                field: "timestamp",
                message: format!("must be a finite number >= 0, found {:?}", &record[0]),
            });
        }
        let tenant_name = record[1].trim();
        if tenant_name.is_empty() {
            return Err(TraceError::Field {
                line,
                field: "tenant_id",
                message: "empty".into(),
            });
        }
        let key = record[2].trim();
        if key.is_empty() {
            return Err(TraceError::Field {
                line,
                field: "key",
                message: "empty".into(),
            });
        }
        let size: u64 = record[3].trim().parse().map_err(|_| TraceError::Field {
            line,
            field: "size_bytes",
            message: format!("not a non-negative integer: {:?}", &record[3]),
        })?;
        let tenant = match tenants.get(tenant_name) {
            Some(&t) => t,
            None => {
                let t = trace.tenants.len() as u32;
                trace.tenants.push(tenant_name.to_owned());
                tenants.insert(tenant_name.to_owned(), t);
                t
            }
        };
        let next_id = trace.keys.len() as u64;
        let object = *objects.entry((tenant, key.to_owned())).or_insert_with(|| {
            trace.keys.push(key.to_owned());
            next_id
        });
        trace.requests.push(Request {
            timestamp,
            tenant,
            object,
            size,
        });
    }
    if !header_seen {
        return Err(TraceError::Header {
            found: String::new(),
        });
    }
    Ok(trace)
}

fn csv_error(e: csv::Error, last_line: u64) -> TraceError {
    let line = e.position().map_or(last_line + 1, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(io) => TraceError::Io(io),
        csv::ErrorKind::Utf8 { err, .. } => TraceError::Line {
            line,
            message: format!("not UTF-8: {err}"),
        },
        other => TraceError::Line {
            line,
            message: format!("{other:?}"),
        },
    }
}

/// Writes a csv trace; keys are [`Trace::keys`] when present, else the object id.
pub fn write_csv(trace: &Trace, out: impl Write) -> Result<(), TraceError> {
    let mut out = std::io::BufWriter::new(out);
    writeln!(out, "{}", CSV_HEADER.join(","))?;
    for r in &trace.requests {
        let tenant = trace
            .tenants
            .get(r.tenant as usize)
            .map_or("0", String::as_str);
        match trace.keys.get(r.object as usize) {
            Some(k) => writeln!(out, "{},{tenant},{k},{}", r.timestamp, r.size)?,
            None => writeln!(out, "{},{tenant},{},{}", r.timestamp, r.object, r.size)?,
        }
    }
    out.flush()?;
    Ok(())
}

/// Reads an oracle-general trace. All requests belong to one tenant named `"0"`.
pub fn read_oracle_general(input: impl Read) -> Result<Trace, TraceError> {
    let mut input = std::io::BufReader::with_capacity(1 << 16, input);
    let mut trace = Trace {
        tenants: vec!["0".to_owned()],
        ..Trace::default()
    };
    let mut buf = [0u8; ORACLE_GENERAL_RECORD_BYTES];
    let mut offset: u64 = 0;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if filled == 0 {
            return Ok(trace);
        }
        if filled < buf.len() {
            return Err(TraceError::Truncated {
                offset,
                len: filled,
            });
        }
        let timestamp = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
        let object = u64::from_le_bytes(buf[4..12].try_into().expect("8 bytes"));
        let size = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes"));
        trace.requests.push(Request {
            timestamp: f64::from(timestamp),
            tenant: 0,
            object,
            size: u64::from(size),
        });
        offset += ORACLE_GENERAL_RECORD_BYTES as u64;
    }
}

/// For each request, the index of the next request for the same object, if any.
pub fn next_access_indices(requests: &[Request]) -> Vec<Option<usize>> {
    let mut next = vec![None; requests.len()];
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, r) in requests.iter().enumerate().rev() {
        next[i] = seen.insert(r.object, i);
    }
    next
}

/// Writes an oracle-general trace, computing each record's next-access virtual time.
/// Timestamps are truncated to whole seconds; a timestamp or size that does not fit in `u32`
/// is an error.
pub fn write_oracle_general(trace: &Trace, out: impl Write) -> Result<(), TraceError> {
    let mut out = std::io::BufWriter::new(out);
    let next = next_access_indices(&trace.requests);
    for (i, (r, n)) in trace.requests.iter().zip(next).enumerate() {
        let ts = r.timestamp.floor();
        if !(0.0..=f64::from(u32::MAX)).contains(&ts) {
            return Err(TraceError::Unrepresentable {
                what: "timestamp",
                value: r.timestamp.to_string(),
                index: i,
            });
        }
        let size = u32::try_from(r.size).map_err(|_| TraceError::Unrepresentable {
            what: "size",
            value: r.size.to_string(),
            index: i,
        })?;
        let mut rec = [0u8; ORACLE_GENERAL_RECORD_BYTES];
        rec[0..4].copy_from_slice(&(ts as u32).to_le_bytes());
        rec[4..12].copy_from_slice(&r.object.to_le_bytes());
        rec[12..16].copy_from_slice(&size.to_le_bytes());
        let next_vtime = n.map_or(-1, |n| n as i64);
        rec[16..24].copy_from_slice(&next_vtime.to_le_bytes());
        out.write_all(&rec)?;
    }
    out.flush()?;
    Ok(())
}

/// Reads a trace in `format`.
pub fn read(format: Format, input: impl Read) -> Result<Trace, TraceError> {
    match format {
        Format::Csv => read_csv(input),
        Format::OracleGeneral => read_oracle_general(input),
    }
}

/// Writes a trace in `format`.
pub fn write(format: Format, trace: &Trace, out: impl Write) -> Result<(), TraceError> {
    match format {
        Format::Csv => write_csv(trace, out),
        Format::OracleGeneral => write_oracle_general(trace, out),
    }
}

//! The conformance runner every FLK SDK has (issue 20), for flk-sdk:
//!
//! ```text
//! cargo run -q -p flk-sdk --example conformance < signing_vectors.json
//! cargo run -q -p flk-sdk --example conformance -- --construction < construction_vectors.json
//! cargo run -q -p flk-sdk --example conformance -- --submit URL --tenant ID --hmac-key SECRET < vectors.json
//! ```
//!
//! * default: one JSON line per vector with `pcs_id`, `canonical_payload`,
//!   `digest_sha256_hex`, `sig_hmac_sha256_b64` (digest mode, key `hmac_key_utf8`) and
//!   `sig_ed25519_b64` (seed `ed25519_seed_hex`), computed from the vector's `pcs` alone;
//! * `--construction`: `name` and the `expected` fields, computed from the raw points;
//! * `--submit URL --tenant ID --hmac-key SECRET` (`--hmac-mode digest|payload`,
//!   `--ed25519-seed HEX` instead of HMAC, `--grpc` for gRPC): signs and submits every
//!   vector's PCS (built from the points with `--construction`), one line per answer with
//!   `pcs_id`, `http_status`, `outcome`, `duplicate`; exit status 1 if any answer is not a
//!   recorded decision (200/202).
//!
//! Lines are compact JSON with the keys in the order above and floats in Python `repr` form,
//! byte-identical to the other SDKs' runners.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use flk_sdk::canon::{write_json_string, write_py_float};
use flk_sdk::client::{Client, ClientConfig, Transport};
use flk_sdk::construct::{self, BudgetParams, BuildParams};
use flk_sdk::{HmacMode, Pcs, SigningKey, hex};
use serde_json::Value;

struct Line(Vec<u8>);

impl Line {
    fn new() -> Line {
        Line(vec![b'{'])
    }
    fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        write_json_string(&mut self.0, k);
        self.0.push(b':');
        &mut self.0
    }
    fn str(&mut self, k: &str, v: &str) -> &mut Self {
        let o = self.key(k);
        write_json_string(o, v);
        self
    }
    fn float(&mut self, k: &str, v: f64) -> &mut Self {
        let o = self.key(k);
        write_py_float(o, v);
        self
    }
    fn raw(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k).extend_from_slice(v.as_bytes());
        self
    }
    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.0);
        out.extend_from_slice(b"}\n");
        out
    }
}

#[derive(Default)]
struct Args {
    construction: bool,
    submit: Option<String>,
    tenant: String,
    hmac_key: Option<String>,
    hmac_mode: HmacMode,
    ed25519_seed: Option<String>,
    grpc: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        tenant: "default".into(),
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--construction" => a.construction = true,
            "--grpc" => a.grpc = true,
            "--submit" => a.submit = Some(val("--submit")?),
            "--tenant" => a.tenant = val("--tenant")?,
            "--hmac-key" => a.hmac_key = Some(val("--hmac-key")?),
            "--hmac-mode" => {
                a.hmac_mode = HmacMode::parse(&val("--hmac-mode")?)
                    .ok_or("--hmac-mode is digest or payload")?
            }
            "--ed25519-seed" => a.ed25519_seed = Some(val("--ed25519-seed")?),
            "-h" | "--help" => return Err("usage: conformance [--construction] [--submit URL --tenant ID --hmac-key SECRET [--hmac-mode digest|payload] [--ed25519-seed HEX] [--grpc]] < vectors.json".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn vectors(doc: &Value) -> Result<&Vec<Value>, String> {
    doc.get("vectors")
        .and_then(Value::as_array)
        .or_else(|| doc.as_array())
        .ok_or_else(|| "input: expected an object with \"vectors\" or a list".into())
}

fn signing_line(v: &Value, hmac: &SigningKey, ed: Option<&SigningKey>) -> Result<Vec<u8>, String> {
    let pcs = Pcs::from_value(&v["pcs"]).map_err(|e| e.to_string())?;
    let c = pcs.canonical();
    let mut l = Line::new();
    l.str("pcs_id", &pcs.expected_pcs_id())
        .str(
            "canonical_payload",
            std::str::from_utf8(&c.payload).unwrap_or(""),
        )
        .str("digest_sha256_hex", &hex::encode(&c.digest))
        .str("sig_hmac_sha256_b64", &hmac.sign(&c).to_base64());
    match ed {
        Some(k) => l.str("sig_ed25519_b64", &k.sign(&c).to_base64()),
        None => l.raw("sig_ed25519_b64", "null"),
    };
    Ok(l.finish())
}

/// A construction vector's points, raw bytes, build parameters and HMAC key.
type ConstructionInput = (Vec<[f64; 3]>, Vec<u8>, BuildParams, String);

/// The points, raw bytes and build parameters of a construction vector.
fn construction_input(v: &Value) -> Result<ConstructionInput, String> {
    let p = &v["params"];
    let points = v["points"]
        .as_array()
        .ok_or("vector without points")?
        .iter()
        .map(|pt| {
            let a = pt
                .as_array()
                .filter(|a| a.len() == 3)
                .ok_or("a point is 3 numbers")?;
            let f = |i: usize| a[i].as_f64().ok_or("a coordinate is a number");
            Ok([f(0)?, f(1)?, f(2)?])
        })
        .collect::<Result<Vec<_>, &str>>()?;
    let raw = construct::raw_rows(
        points
            .iter()
            .enumerate()
            .map(|(i, pt)| (1_700_000_000.0 + 0.25 * i as f64, pt)),
    );
    let seed = p["coherence_seed"]
        .as_u64()
        .or_else(|| v["seed"].as_u64())
        .or_else(|| v["seed"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    let mut bp = BuildParams::new(
        p["shard_id"].as_str().unwrap_or(""),
        p["epoch"].as_u64().unwrap_or(0),
        u32::try_from(seed).map_err(|_| "seed must be below 2^32")?,
    );
    if let Some(s) = p["scales"].as_array() {
        bp.scales = s.iter().filter_map(Value::as_u64).collect();
    }
    if let Some(n) = p["merkle_chunk_size"].as_u64() {
        bp.merkle_chunk_size = n as usize;
    }
    if let Some(n) = p["num_directions"].as_u64() {
        bp.num_directions = n as usize;
    }
    if let Some(n) = p["num_bins"].as_u64() {
        bp.num_bins = n as usize;
    }
    if let Some(a) = p["attempt"].as_u64() {
        bp.attempt = a;
    }
    let b = &p["budget_params"];
    let d = BudgetParams::default();
    bp.budget = BudgetParams {
        alpha: b["alpha"].as_f64().unwrap_or(d.alpha),
        beta: b["beta"].as_f64().unwrap_or(d.beta),
        gamma: b["gamma"].as_f64().unwrap_or(d.gamma),
        base: b["base"].as_f64().unwrap_or(d.base),
        d0: b["D0"].as_f64().unwrap_or(d.d0),
    };
    let key = p["hmac_key"].as_str().unwrap_or("").to_string();
    Ok((points, raw, bp, key))
}

fn construction_line(v: &Value) -> Result<Vec<u8>, String> {
    let (points, raw, bp, key) = construction_input(v)?;
    let s = construct::signals(&points, &raw, &bp);
    let pcs = construct::build_pcs(&points, &raw, &bp).map_err(|e| e.to_string())?;
    let c = pcs.canonical();
    let mut l = Line::new();
    match v["name"].as_str() {
        Some(n) => l.str("name", n),
        None => l.raw("name", "null"),
    };
    let mut nj = Line::new();
    for (scale, n) in &s.n_j {
        nj.raw(&scale.to_string(), &n.to_string());
    }
    let mut nj = nj.finish();
    nj.pop(); // the newline
    l.raw("N_j", std::str::from_utf8(&nj).unwrap_or("{}"));
    l.float("D_hat", pcs.d_hat).float("coh_star", s.coh_star);
    let mut vs = Vec::new();
    vs.push(b'[');
    for (i, x) in s.v_star.iter().enumerate() {
        if i > 0 {
            vs.push(b',');
        }
        write_py_float(&mut vs, *x);
    }
    vs.push(b']');
    l.raw("v_star", std::str::from_utf8(&vs).unwrap_or("[]"));
    l.float("r", s.r)
        .str("regime", s.regime)
        .float("budget", s.budget)
        .raw("merkle_n_leaves", &s.merkle_n_leaves.to_string())
        .str("merkle_root", &s.merkle_root)
        .str("pcs_id", &s.pcs_id)
        .str(
            "signature_payload",
            std::str::from_utf8(&c.payload).unwrap_or(""),
        );
    // The reference agent of these vectors signs the payload itself (HMAC payload mode).
    if key.is_empty() {
        l.raw("sig_hmac_sha256_b64", "null");
    } else {
        let k = SigningKey::hmac(key.as_bytes(), HmacMode::Payload).map_err(|e| e.to_string())?;
        l.str("sig_hmac_sha256_b64", &k.sign(&c).to_base64());
    }
    Ok(l.finish())
}

async fn submit(args: &Args, doc: &Value, url: &str) -> Result<bool, String> {
    let key = match (&args.ed25519_seed, &args.hmac_key) {
        (Some(seed), _) => SigningKey::ed25519_seed_hex(seed).map_err(|e| e.to_string())?,
        (None, Some(k)) => {
            SigningKey::hmac(k.as_bytes(), args.hmac_mode).map_err(|e| e.to_string())?
        }
        (None, None) => return Err("--submit needs --hmac-key or --ed25519-seed".into()),
    };
    let transport = if args.grpc {
        Transport::Grpc
    } else {
        Transport::Rest
    };
    let client = Client::new(ClientConfig::new(url, &args.tenant).with_transport(transport))
        .map_err(|e| e.to_string())?;
    let mut all_ok = true;
    let mut out = std::io::stdout().lock();
    for v in vectors(doc)? {
        let mut pcs = if args.construction {
            let (points, raw, bp, _) = construction_input(v)?;
            construct::build_pcs(&points, &raw, &bp).map_err(|e| e.to_string())?
        } else {
            Pcs::from_value(&v["pcs"]).map_err(|e| e.to_string())?
        };
        pcs.sign(&key);
        let a = client.submit(&pcs).await.map_err(|e| e.to_string())?;
        all_ok &= matches!(a.http_status, 200 | 202);
        let mut l = Line::new();
        l.str("pcs_id", &pcs.pcs_id)
            .raw("http_status", &a.http_status.to_string());
        match &a.outcome {
            Some(o) => l.str("outcome", o),
            None => l.raw("outcome", "null"),
        };
        l.raw("duplicate", if a.duplicate { "true" } else { "false" });
        out.write_all(&l.finish()).map_err(|e| e.to_string())?;
    }
    Ok(all_ok)
}

fn run() -> Result<bool, String> {
    let args = parse_args()?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())?;
    let doc: Value =
        serde_json::from_slice(&input).map_err(|e| format!("input is not json: {e}"))?;
    if let Some(url) = &args.submit {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        return rt.block_on(submit(&args, &doc, url));
    }
    let mut out = std::io::stdout().lock();
    if args.construction {
        for v in vectors(&doc)? {
            out.write_all(&construction_line(v)?)
                .map_err(|e| e.to_string())?;
        }
        return Ok(true);
    }
    let hmac = SigningKey::hmac(
        doc["hmac_key_utf8"].as_str().unwrap_or("").as_bytes(),
        HmacMode::Digest,
    )
    .map_err(|e| e.to_string())?;
    let ed = doc["ed25519_seed_hex"]
        .as_str()
        .map(SigningKey::ed25519_seed_hex)
        .transpose()
        .map_err(|e| e.to_string())?;
    for v in vectors(&doc)? {
        out.write_all(&signing_line(v, &hmac, ed.as_ref())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(true)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("conformance: {e}");
            ExitCode::from(2)
        }
    }
}

//! `flk-dashboards --out DIR`: writes every generated Grafana dashboard into DIR
//! (`cargo run -p flk-dashboards -- --out observability/grafana` from the workspace root).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let out = match (args.next().as_deref(), args.next(), args.next()) {
        (Some("--out"), Some(dir), None) => PathBuf::from(dir),
        _ => {
            eprintln!("usage: flk-dashboards --out DIR");
            return ExitCode::from(2);
        }
    };
    match flk_dashboards::write_all(&out) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", out.join(f).display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

//! The KPI page in a real browser: many tenants with long ids, big counts and amounts, every
//! window's decisions-over-time chart, rendered by headless Chromium in a 1280 x 800 window,
//! must not scroll sideways: neither the page (`scrollWidth <= clientWidth` of the document,
//! whose client width leaves room for a vertical scrollbar) nor the report tables' own boxes.
//!
//! Chromium is found as `$FLK_CHROMIUM`, else `chromium`, `chromium-browser` or
//! `google-chrome` on `PATH` (`.ci/deps/chromium.sh` installs Debian's). Without one the test
//! is skipped with a message, except under CI (`CI` set), where it fails. The page itself has
//! no script: the test measures a copy with one measuring script appended.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use flk_proto::v1::OutcomeKind::{Accepted, Escalated, Rejected};
use svc_kpi::{ManualClock, Window};

/// Appended to the measured copy: writes the widths into the DOM that `--dump-dom` prints.
const PROBE: &str = r#"<script>
const d = document.documentElement;
const boxes = [...document.querySelectorAll('.scroll')];
const over = boxes.filter(e => e.scrollWidth > e.clientWidth);
const widest = Math.max(0, ...boxes.map(e => e.scrollWidth));
document.body.setAttribute('data-fit', [innerWidth, d.clientWidth, d.scrollWidth, over.length, widest].join(' '));
</script></body>"#;

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLK_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium in a window of `size` (`W,H`) with `args` (plus a private profile)
/// and returns its standard output; killed after 120 s.
fn run_chromium(bin: &Path, profile: &Path, size: &str, args: &[String]) -> String {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--window-size={size}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        let _ = tx.send(out);
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(out) => {
            let _ = child.wait();
            out
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not finish within 120 s", bin.display());
        }
    }
}

/// Reports of many tenants (some with long unbroken ids) with decisions spread over the
/// week, then inflated to the widest numbers a table cell can hold.
fn wide_reports(dir: &Path) -> Vec<svc_kpi::KpiReport> {
    let clock = ManualClock::new(T0);
    let kpi = open(dir, &clock);
    let tenants: Vec<String> = (0..8)
        .map(|i| match i % 3 {
            0 => format!("tenant-{i}"),
            1 => format!("{}-{i}", "a-very-long-tenant-identifier".repeat(4)),
            _ => format!("{}{i}", "x".repeat(120)),
        })
        .collect();
    let mut records = Vec::new();
    let mut seq = 0;
    for (t, tenant) in tenants.iter().enumerate() {
        for k in 0..150u64 {
            seq += 1;
            let outcome = [Accepted, Accepted, Accepted, Escalated, Rejected][(k % 5) as usize];
            // Minutes back over the whole week, denser in the last hour.
            let back = if k % 2 == 0 {
                k % 60
            } else {
                k * 67 % (7 * 24 * 60)
            };
            let n = (t as u64) * 1_000 + k;
            records.push(decision(
                seq,
                tenant,
                n,
                outcome,
                T0 - back as i64 * MINUTE,
                1_234_567,
            ));
        }
    }
    kpi.apply(&records).unwrap();
    let mut out = Vec::new();
    for tenant in &tenants {
        for w in Window::ALL {
            let mut r = kpi.report(tenant, w).unwrap();
            r.decisions = 194_000_000_000;
            r.accepted = 190_000_000_000;
            r.escalated = 3_000_000_000;
            r.rejected = 1_000_000_000;
            r.hallucinations_reported = 12_345_678;
            r.false_alarms = 9_876_543;
            r.cost_per_trusted_task_usd = Some(0.000_004_123_4);
            r.cost_breakdown_usd.total = 123_456_789_012.0;
            out.push(r);
        }
    }
    out
}

#[test]
fn the_kpi_page_fits_a_1280_pixel_window() {
    let Some(bin) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: no chromium found (bash .ci/deps/chromium.sh installs it)"
        );
        eprintln!(
            "skipped: no chromium on PATH nor FLK_CHROMIUM (bash .ci/deps/chromium.sh installs it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let html =
        svc_kpi::render::render_html(&wide_reports(&dir.path().join("kpi")), "FLK KPI report");
    assert!(!html.contains("<script"), "the page itself has no script");
    let page = dir.path().join("page.html");
    std::fs::write(&page, &html).unwrap();
    let probe = dir.path().join("probe.html");
    std::fs::write(&probe, html.replacen("</body>", PROBE, 1)).unwrap();

    // For people (and failures): FLK_KPI_SCREENSHOT=FILE.png keeps a screenshot of the page's
    // first 1,000 px.
    if let Some(shot) = std::env::var_os("FLK_KPI_SCREENSHOT") {
        run_chromium(
            &bin,
            &dir.path().join("profile"),
            "1280,1000",
            &[
                format!("--screenshot={}", PathBuf::from(shot).display()),
                format!("file://{}", page.display()),
            ],
        );
    }

    let dom = run_chromium(
        &bin,
        &dir.path().join("profile"),
        "1280,800",
        &[
            "--dump-dom".to_owned(),
            format!("file://{}", probe.display()),
        ],
    );
    let fit = dom
        .split("data-fit=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the probe did not run; chromium printed:\n{dom}"));
    let [inner, client, scroll, boxes, widest]: [u64; 5] = fit
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert_eq!(inner, 1280, "the window is 1280 px wide");
    assert!(
        scroll <= client,
        "the page is {scroll} px wide in a {client} px viewport: it scrolls sideways"
    );
    assert_eq!(
        boxes, 0,
        "{boxes} report tables scroll sideways at 1280 px (the widest is {widest} px)"
    );
}

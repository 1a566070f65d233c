//! HTML: one self-contained page (inline CSS and SVG, no script, no external URL). Every
//! string from the report goes through [`esc`].

use std::fmt::Write as _;

use crate::model::{DayCount, Report, Status};

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;color:#1d232a;max-width:1200px}\
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}\
.meta{color:#555}table{border-collapse:collapse;width:100%;font-size:.9rem}\
th,td{border:1px solid #d0d7de;padding:.35rem .5rem;vertical-align:top;text-align:left}\
th{background:#f3f5f7}.s{font-weight:600;white-space:nowrap;border-radius:3px;padding:0 .3rem}\
.pass{color:#116329;background:#dafbe1}.fail{color:#a40e26;background:#ffebe9}\
.not_applicable{color:#57606a;background:#eaeef2}.manual{color:#7d4e00;background:#fff8c5}\
.ev{margin:.2rem 0 .5rem}.fig{color:#555;font-size:.8rem}code,pre{font-size:.8rem}\
pre{background:#f6f8fa;padding:.5rem;overflow:auto;max-height:20rem}\
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #d0d7de;padding:.5rem 1rem;border-radius:6px}";

const ACCEPT: &str = "#2da44e";
const ESCALATE: &str = "#d4a72c";
const REJECT: &str = "#cf222e";

fn status_color(s: Status) -> &'static str {
    match s {
        Status::Pass => ACCEPT,
        Status::Fail => REJECT,
        Status::NotApplicable => "#8c959f",
        Status::Manual => ESCALATE,
    }
}

fn badge(s: Status) -> String {
    format!("<span class=\"s {0}\">{0}</span>", s.as_str())
}

/// Every UTC day of the period, with the timeline's counts and zero for days without
/// decisions, so gaps show; the timeline alone when the period spans more than ten years.
fn chart_days(report: &Report) -> Vec<DayCount> {
    let first = report.period.from.date();
    let last = (report.period.to - time::Duration::nanoseconds(1)).date();
    let span = (last - first).whole_days();
    if !(0..=3660).contains(&span) {
        return report.timeline.clone();
    }
    let by_day: std::collections::BTreeMap<&str, &DayCount> = report
        .timeline
        .iter()
        .map(|d| (d.day.as_str(), d))
        .collect();
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let mut out = Vec::with_capacity(span as usize + 1);
    let mut day = first;
    loop {
        let name = day.format(fmt).unwrap_or_default();
        out.push(match by_day.get(name.as_str()) {
            Some(d) => (*d).clone(),
            None => DayCount {
                day: name,
                accept: 0,
                escalate: 0,
                reject: 0,
            },
        });
        match day.next_day() {
            Some(next) if next <= last => day = next,
            _ => break,
        }
    }
    // days of the timeline outside the period (none from the evidence side) stay visible
    for d in &report.timeline {
        if !out.iter().any(|o| o.day == d.day) {
            out.push(d.clone());
        }
    }
    out.sort_by(|a, b| a.day.cmp(&b.day));
    out
}

/// Decisions per day, stacked accept / escalate / reject.
fn timeline_svg(report: &Report) -> String {
    let days = &chart_days(report);
    if days.iter().all(|d| d.accept + d.escalate + d.reject == 0) {
        return "<p>No decisions in the period.</p>".to_string();
    }
    let (w, h, left, bottom, top) = (760.0_f64, 220.0_f64, 50.0_f64, 30.0_f64, 10.0_f64);
    let plot_w = w - left - 10.0;
    let plot_h = h - bottom - top;
    let max = days
        .iter()
        .map(|d| d.accept + d.escalate + d.reject)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let slot = plot_w / days.len() as f64;
    let bar = (slot * 0.8).max(1.0);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg role=\"img\" aria-label=\"Decisions per day\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">"
    );
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{y0}\" stroke=\"#888\"/><line x1=\"{left}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#888\"/>",
        y0 = top + plot_h,
        x1 = left + plot_w
    );
    let _ = write!(
        s,
        "<text x=\"{x}\" y=\"{y}\" font-size=\"10\" text-anchor=\"end\">{max}</text><text x=\"{x}\" y=\"{y0}\" font-size=\"10\" text-anchor=\"end\">0</text>",
        x = left - 4.0,
        y = top + 8.0,
        y0 = top + plot_h
    );
    for (i, d) in days.iter().enumerate() {
        let x = left + i as f64 * slot + (slot - bar) / 2.0;
        let mut y = top + plot_h;
        for (n, color, name) in [
            (d.accept, ACCEPT, "accept"),
            (d.escalate, ESCALATE, "escalate"),
            (d.reject, REJECT, "reject"),
        ] {
            if n == 0 {
                continue;
            }
            let bh = n as f64 / max * plot_h;
            y -= bh;
            let _ = write!(
                s,
                "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{bar:.2}\" height=\"{bh:.2}\" fill=\"{color}\"><title>{} {name}: {n}</title></rect>",
                esc(&d.day)
            );
        }
    }
    let first = esc(&days[0].day);
    let last = esc(&days[days.len() - 1].day);
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"{y}\" font-size=\"10\">{first}</text><text x=\"{x}\" y=\"{y}\" font-size=\"10\" text-anchor=\"end\">{last}</text>",
        y = h - 12.0,
        x = left + plot_w
    );
    let mut lx = left;
    for (color, name) in [
        (ACCEPT, "accept"),
        (ESCALATE, "escalate"),
        (REJECT, "reject"),
    ] {
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"{y}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{tx}\" y=\"{ty}\" font-size=\"10\">{name}</text>",
            y = h - 10.0,
            tx = lx + 14.0,
            ty = h - 1.0
        );
        lx += 80.0;
    }
    s.push_str("</svg>");
    s
}

/// Controls per status, horizontal bars.
fn status_svg(report: &Report) -> String {
    let sm = &report.summary;
    let rows = [
        (Status::Pass, sm.pass),
        (Status::Fail, sm.fail),
        (Status::NotApplicable, sm.not_applicable),
        (Status::Manual, sm.manual),
    ];
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    let (w, row_h, label_w) = (500.0_f64, 26.0_f64, 110.0_f64);
    let h = row_h * rows.len() as f64 + 4.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg role=\"img\" aria-label=\"Controls per status\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">"
    );
    for (i, (status, n)) in rows.iter().enumerate() {
        let y = 2.0 + i as f64 * row_h;
        let bw = *n as f64 / max * (w - label_w - 50.0);
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{ty}\" font-size=\"12\">{name}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{bw:.2}\" height=\"{bh}\" fill=\"{color}\"><title>{name}: {n}</title></rect><text x=\"{nx:.2}\" y=\"{ty}\" font-size=\"12\">{n}</text>",
            ty = y + 16.0,
            name = status.as_str(),
            bh = row_h - 6.0,
            color = status_color(*status),
            nx = label_w + bw + 6.0
        );
    }
    s.push_str("</svg>");
    s
}

fn figures(f: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
    f.iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{}&nbsp;=&nbsp;{}", esc(k), esc(&v))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn render(report: &Report) -> String {
    let title = format!("{} compliance report", report.framework.title);
    let from = report.period.from_rfc3339();
    let to = report.period.to_rfc3339();
    let sm = &report.summary;
    let mut h = String::with_capacity(16 * 1024);
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body>",
        esc(&title)
    );
    let source = match report.framework.source {
        crate::framework::Source::Builtin => "built-in",
        crate::framework::Source::File => "from a file",
    };
    let _ = writeln!(
        h,
        "<h1>{}</h1><p class=\"meta\">Framework <code>{}</code> ({source}) &middot; period from {} (inclusive) to {} (exclusive) &middot; report schema {}</p>",
        esc(&title),
        esc(&report.framework.id),
        esc(&from),
        esc(&to),
        report.schema_version
    );
    let _ = writeln!(
        h,
        "<div class=\"cards\"><div class=\"card\">{} controls</div><div class=\"card\">{} {}</div><div class=\"card\">{} {}</div><div class=\"card\">{} {}</div><div class=\"card\">{} {}</div></div>",
        sm.controls,
        sm.pass,
        badge(Status::Pass),
        sm.fail,
        badge(Status::Fail),
        sm.not_applicable,
        badge(Status::NotApplicable),
        sm.manual,
        badge(Status::Manual)
    );
    h.push_str("<h2>Decisions per day</h2>\n");
    h.push_str(&timeline_svg(report));
    h.push_str("\n<h2>Controls per status</h2>\n");
    h.push_str(&status_svg(report));
    h.push_str("\n<h2>Controls</h2>\n<table><thead><tr><th>Control</th><th>Status</th><th>Rule</th><th>Evidence</th></tr></thead><tbody>\n");
    for c in &report.controls {
        let _ = write!(
            h,
            "<tr id=\"control-{}\"><td><strong>{}</strong><br>{}<br><small>{}</small></td><td>{}</td><td><code>{}</code></td><td>",
            esc(&c.id),
            esc(&c.id),
            esc(&c.title),
            esc(&c.description),
            badge(c.status),
            c.rule.as_str()
        );
        if c.evidence.is_empty() {
            h.push_str("<em>No automated evidence: a person judges this control.</em>");
        }
        for e in &c.evidence {
            let _ = write!(
                h,
                "<div class=\"ev\"><code>{}</code> {}<br>{}<br><span class=\"fig\">{}</span></div>",
                esc(&e.kind),
                badge(e.status),
                esc(&e.detail),
                figures(&e.figures)
            );
        }
        h.push_str("</td></tr>\n");
    }
    h.push_str("</tbody></table>\n");

    // samples, once per evidence kind
    let mut seen: Vec<&str> = Vec::new();
    let mut samples = String::new();
    for c in &report.controls {
        for e in &c.evidence {
            if e.samples.is_empty() || seen.contains(&e.kind.as_str()) {
                continue;
            }
            seen.push(&e.kind);
            for s in &e.samples {
                let proof = serde_json::to_string_pretty(&s.proof).unwrap_or_default();
                let anchors = serde_json::to_string_pretty(&s.anchors).unwrap_or_default();
                let _ = writeln!(
                    samples,
                    "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td><details><summary>proof bundle</summary><pre>{}</pre></details><details><summary>anchors</summary><pre>{}</pre></details></td></tr>",
                    esc(&e.kind),
                    esc(&s.tenant_id),
                    esc(&s.pcs_id),
                    s.leaf_index,
                    s.anchors.len(),
                    esc(&proof),
                    esc(&anchors)
                );
            }
        }
    }
    h.push_str("<h2>Samples</h2>\n");
    if samples.is_empty() {
        h.push_str("<p>No sample decisions in this report.</p>\n");
    } else {
        h.push_str("<p>Each sample is a decision with its inclusion proof. To check one without trusting FLK, save its proof bundle as <code>proof.json</code> and run <code>flk audit verify --bundle proof.json --key KEY</code> with the log's verifier key; the anchors show where the checkpoint the proof is against was anchored.</p>\n");
        h.push_str("<table><thead><tr><th>Evidence</th><th>Tenant</th><th>pcs id</th><th>Leaf</th><th>Anchors</th><th>Proof</th></tr></thead><tbody>\n");
        h.push_str(&samples);
        h.push_str("</tbody></table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Framework, Source};
    use crate::model::{EvidenceSet, Period, evaluate};

    #[test]
    fn the_chart_has_every_day_of_the_period() {
        let f = Framework {
            id: "x".into(),
            title: "X".into(),
            version: None,
            description: None,
            source: Source::File,
            controls: vec![],
        };
        let set = EvidenceSet {
            by_kind: Default::default(),
            timeline: vec![DayCount {
                day: "2026-02-27".into(),
                accept: 5,
                escalate: 1,
                reject: 0,
            }],
        };
        let period = Period::parse("2026-02-26T12:00:00Z", "2026-03-02").unwrap();
        let days: Vec<(String, u64)> = chart_days(&evaluate(&f, &set, &period))
            .into_iter()
            .map(|d| (d.day, d.accept))
            .collect();
        let want = [
            ("2026-02-26", 0),
            ("2026-02-27", 5),
            ("2026-02-28", 0),
            ("2026-03-01", 0),
        ];
        assert_eq!(days, want.map(|(d, n)| (d.to_string(), n)));
    }
}

//! Rendering KPI reports for people and machines (`flk report kpi`): [`render_json`] and
//! [`render_html`], a self-contained page (inline CSS and SVG charts, no scripts, no external
//! resources) with SLO compliance per tenant and window.
//!
//! The page is laid out for a 1280-pixel-wide window and narrower: the report table scrolls
//! inside its own box when it cannot fit (its headers wrap first), long tenant ids break
//! anywhere, and every chart is an SVG with a `viewBox` that scales down to its container.
//! Amounts of money are shown with [`format_usd`] (significant digits, never a zero for a
//! non-zero cost); decisions over time ([`crate::report::DecisionSeries`]) are drawn per
//! window as stacked columns of accepted, escalated and rejected decisions, times in UTC.

use std::fmt::Write as _;

use crate::report::{DecisionSeries, KpiReport};

/// The reports as one pretty-printed JSON document `{"reports": [...]}`.
pub fn render_json(reports: &[KpiReport]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "reports": reports })).unwrap_or_default()
}

fn esc(s: &str) -> String {
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

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{:.2} %", v * 100.0))
}

fn usd(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), format_usd)
}

/// `digits` (ASCII digits) with a comma between each group of three.
fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count with thousands separators (`194,000`).
fn count(n: u64) -> String {
    group_thousands(&n.to_string())
}

/// A count held in an `f64` (a bar's value), as [`count`].
fn count_f64(v: f64) -> String {
    count(v.max(0.0).round() as u64)
}

/// An amount in US dollars for people: whole dollars with thousands separators from $1,000
/// (`$1,234`), cents from $1 (`$1.23`), three significant digits below $1 (`$0.0412`,
/// `$0.00000412`), so a small non-zero cost never shows as zero. Exactly `$0` for zero;
/// scientific notation below $0.00000001 and from $10^15 (`$4.12e-12`); a minus sign before
/// the dollar for negative amounts (`-$1.23`); `n/a` for NaN and infinities.
pub fn format_usd(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    if v == 0.0 {
        return "$0".to_owned();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let a = v.abs();
    let body = if !(1e-8..1e15).contains(&a) {
        format!("{a:.2e}")
    } else if a >= 999.995 {
        group_thousands(&format!("{a:.0}"))
    } else if a >= 0.9995 {
        format!("{a:.2}")
    } else {
        // Three significant digits: the first is at 10^e.
        let e = a.log10().floor() as i32;
        let mut decimals = usize::try_from(2 - e).unwrap_or(0);
        let mut text = format!("{a:.decimals$}");
        // Rounding up to the next power of ten (0.0009996 -> 0.001000) adds a digit.
        if text.parse::<f64>().is_ok_and(|r| r >= 10f64.powi(e + 1)) && decimals > 0 {
            decimals -= 1;
            text = format!("{a:.decimals$}");
        }
        text
    };
    format!("{sign}${body}")
}

fn slo_cell(r: &KpiReport, name: &str) -> String {
    match r.slo.get(name) {
        Some(s) => {
            let (class, word) = match s.ok {
                Some(true) => ("ok", "met"),
                Some(false) => ("bad", "missed"),
                None => ("na", "no data"),
            };
            format!(
                "<td class=\"{class}\">{word} <small>({} {})</small></td>",
                esc(&s.op),
                s.target
            )
        }
        None => "<td class=\"na\">-</td>".to_owned(),
    }
}

/// Opens an SVG of `w` x `h` user units drawn at that size at most, scaled down to fit its
/// container (`viewBox`; CSS `max-width: 100%`).
fn svg_open(w: usize, h: usize, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\"><text x=\"0\" y=\"14\" class=\"t\">{}</text>",
        esc(title),
        esc(title)
    )
}

/// A horizontal bar chart of labelled values, as inline SVG; `fmt` writes a value.
fn bars(title: &str, items: &[(String, f64)], fmt: fn(f64) -> String) -> String {
    let max = items.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let (row, label_w, bar_w): (usize, usize, usize) = (18, 110, 260);
    let h = 24 + row * items.len();
    let mut svg = svg_open(label_w + bar_w + 120, h, title);
    for (i, (label, v)) in items.iter().enumerate() {
        let y = 22 + row * i;
        let w = if max > 0.0 {
            v / max * bar_w as f64
        } else {
            0.0
        };
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{label_w}\" y=\"{}\" width=\"{w:.1}\" height=\"12\" class=\"b\"/><text x=\"{}\" y=\"{}\">{}</text>",
            y + 11,
            esc(label),
            y + 1,
            label_w as f64 + w + 4.0,
            y + 11,
            esc(&fmt(*v))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A histogram as inline SVG columns.
fn columns(title: &str, bounds: &[f64], counts: &[u64]) -> String {
    let max = counts.iter().copied().max().unwrap_or(0);
    let (col, h): (usize, u32) = (14, 90);
    let width = 20 + col * counts.len();
    let mut svg = svg_open(width, h as usize + 40, title);
    for (i, c) in counts.iter().enumerate() {
        let ch = if max > 0 {
            *c as f64 / max as f64 * f64::from(h)
        } else {
            0.0
        };
        let lo = if i == 0 {
            f64::NEG_INFINITY
        } else {
            bounds[i - 1]
        };
        let hi = bounds.get(i).copied().unwrap_or(f64::INFINITY);
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{:.1}\" width=\"{}\" height=\"{ch:.1}\" class=\"b\"><title>[{lo}, {hi}): {c}</title></rect>",
            10 + col * i,
            20.0 + f64::from(h) - ch,
            col - 2
        );
    }
    if let (Some(first), Some(last)) = (bounds.first(), bounds.last()) {
        let _ = write!(
            svg,
            "<text x=\"10\" y=\"{}\">{first}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{last}</text>",
            h + 34,
            width - 4,
            h + 34
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A count in at most four characters or so for an axis: `950`, `2.5k`, `20k`, `1M`.
fn compact(n: u64) -> String {
    let short = |n: u64, unit: u64, suffix: &str| {
        if n.is_multiple_of(unit) {
            format!("{}{suffix}", n / unit)
        } else {
            format!("{:.1}{suffix}", n as f64 / unit as f64)
        }
    };
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => short(n, 1_000, "k"),
        1_000_000..1_000_000_000 => short(n, 1_000_000, "M"),
        _ => short(n, 1_000_000_000, "G"),
    }
}

/// The smallest 1, 2 or 5 times a power of ten that is at least `n` (at least 1).
fn nice_ceiling(n: u64) -> u64 {
    let mut p = 1u64;
    loop {
        for m in [1, 2, 5] {
            let c = p.saturating_mul(m);
            if c >= n || c == u64::MAX {
                return c;
            }
        }
        p = p.saturating_mul(10);
    }
}

/// A time in Unix ms as UTC text: `HH:MM`, or `Mon DD HH:MM` with `with_date`.
fn utc(unix_ms: i64, with_date: bool) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000)) else {
        return "?".to_owned();
    };
    let hm = format!("{:02}:{:02}", t.hour(), t.minute());
    if with_date {
        let month = format!("{:?}", t.month());
        format!("{} {} {hm}", &month[..3], t.day())
    } else {
        hm
    }
}

/// Outcome classes and legend names of the decisions-over-time chart, bottom to top.
const SERIES: [(&str, &str); 3] = [
    ("acc", "accepted"),
    ("esc", "escalated"),
    ("rej", "rejected"),
];

/// Decisions over `window` as stacked columns (accepted, escalated, rejected per step), with
/// a legend, the y scale and UTC times at the start, middle and end; each column's
/// `<title>` gives its step and counts.
fn timeline(window: &str, s: &DecisionSeries) -> String {
    let (w, h) = (400usize, 190usize);
    let (left, right, top, bottom) = (40usize, 6usize, 34usize, 20usize);
    let (plot_w, plot_h) = ((w - left - right) as f64, (h - top - bottom) as f64);
    let step_ms = i64::try_from(s.step_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX);
    let step_name = match s.step_minutes {
        1 => "minute".to_owned(),
        m if m.is_multiple_of(60) => format!("{} h", m / 60),
        m => format!("{m} min"),
    };
    let title = format!("decisions over {window}, per {step_name} (UTC)");
    let mut svg = svg_open(w, h, &title);
    // Legend.
    let mut x = 0usize;
    for (class, name) in SERIES {
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"20\" width=\"9\" height=\"9\" class=\"{class}\"/><text x=\"{}\" y=\"28\">{name}</text>",
            x + 12
        );
        x += 18 + 7 * name.len();
    }
    let n = s.len();
    let totals: Vec<u64> = (0..n)
        .map(|i| {
            s.accepted[i]
                .saturating_add(s.escalated.get(i).copied().unwrap_or(0))
                .saturating_add(s.rejected.get(i).copied().unwrap_or(0))
        })
        .collect();
    let max = nice_ceiling(totals.iter().copied().max().unwrap_or(0));
    // Grid and y scale: 0, half, max.
    for (frac, value) in [(0.0, 0), (0.5, max / 2), (1.0, max)] {
        if frac == 0.5 && !max.is_multiple_of(2) {
            continue;
        }
        let y = top as f64 + plot_h * (1.0 - frac);
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - right,
            left - 4,
            y + 4.0,
            compact(value)
        );
    }
    if n == 0 {
        svg.push_str("</svg>");
        return svg;
    }
    if totals.iter().all(|t| *t == 0) {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"na\">no decisions in this window</text>",
            left as f64 + plot_w / 2.0,
            top as f64 + plot_h / 2.0
        );
    }
    let col = plot_w / n as f64;
    let bar = (col * 0.8).max(0.5);
    let with_date = s.step_minutes >= 60;
    for (i, total) in totals.iter().enumerate() {
        if *total == 0 {
            continue;
        }
        let from = s
            .start_unix_ms
            .saturating_add(step_ms.saturating_mul(i as i64));
        let counts = [
            s.accepted[i],
            s.escalated.get(i).copied().unwrap_or(0),
            s.rejected.get(i).copied().unwrap_or(0),
        ];
        let _ = write!(
            svg,
            "<g><title>{} to {}: {} accepted, {} escalated, {} rejected</title>",
            utc(from, true),
            utc(from.saturating_add(step_ms), with_date),
            count(counts[0]),
            count(counts[1]),
            count(counts[2])
        );
        let x = left as f64 + col * i as f64 + (col - bar) / 2.0;
        let mut base = top as f64 + plot_h;
        for (c, (class, _)) in counts.iter().zip(SERIES) {
            if *c == 0 {
                continue;
            }
            let ch = *c as f64 / max as f64 * plot_h;
            base -= ch;
            let _ = write!(
                svg,
                "<rect x=\"{x:.2}\" y=\"{base:.2}\" width=\"{bar:.2}\" height=\"{ch:.2}\" class=\"{class}\"/>"
            );
        }
        svg.push_str("</g>");
    }
    // Times: start, middle, end of the window.
    let end = s
        .start_unix_ms
        .saturating_add(step_ms.saturating_mul(n as i64));
    let mid = s
        .start_unix_ms
        .saturating_add(step_ms.saturating_mul(n as i64 / 2));
    let y = h - 6;
    let _ = write!(
        svg,
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" class=\"axis\"/>\
<text x=\"{left}\" y=\"{y}\">{}</text><text x=\"{:.1}\" y=\"{y}\" text-anchor=\"middle\">{}</text><text x=\"{}\" y=\"{y}\" text-anchor=\"end\">{}</text></svg>",
        w - right,
        top + plot_h as usize,
        top + plot_h as usize,
        utc(s.start_unix_ms, with_date),
        left as f64 + plot_w / 2.0,
        utc(mid, with_date),
        w - right,
        utc(end, with_date),
    );
    svg
}

/// A self-contained HTML page: per tenant, a table of every window (counts, rates, costs,
/// latency, audit coverage, SLO compliance), each window's decisions over time, and charts
/// of the widest window's outcomes, regimes, cost breakdown and signal distributions.
pub fn render_html(reports: &[KpiReport], title: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
*{{box-sizing:border-box}}body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222;overflow-wrap:anywhere}}\
table{{border-collapse:collapse;margin:1em 0;font-size:13px}}\
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}}th{{background:#f3f3f3}}\
tr:first-child th{{white-space:normal;overflow-wrap:normal;vertical-align:bottom;min-width:4.5em}}\
td.ok{{background:#dff5df}}td.bad{{background:#f9d6d6}}td.na{{color:#888}}\
svg{{margin:0 1.5em 1em 0;font-size:11px;max-width:100%;height:auto}}svg .b{{fill:#4a78c2}}svg .t{{font-weight:bold}}\
svg .acc{{fill:#3d9a5f}}svg .esc{{fill:#e3a324}}svg .rej{{fill:#c9443f}}svg .grid{{stroke:#e4e4e4}}svg .axis{{stroke:#999}}svg .na{{fill:#888}}\
.tables{{display:flex;flex-wrap:wrap;gap:0 1.5em;align-items:flex-start}}\
.scroll{{overflow-x:auto;max-width:100%}}.charts{{display:flex;flex-wrap:wrap;gap:0 1.5em}}\
figure{{flex:1 1 360px;min-width:0;max-width:560px;margin:0 0 1em}}figure svg{{width:100%;margin:0}}\
</style></head><body><h1>{}</h1>",
        esc(title),
        esc(title)
    );
    if reports.is_empty() {
        out.push_str("<p>No reports.</p>");
    }
    let mut tenants: Vec<&str> = reports.iter().map(|r| r.tenant_id.as_str()).collect();
    tenants.dedup();
    for tenant in tenants {
        let rows: Vec<&KpiReport> = reports.iter().filter(|r| r.tenant_id == tenant).collect();
        let _ = write!(
            out,
            "<h2>Tenant {}</h2><div class=\"tables\"><div class=\"scroll\"><table><tr><th>window</th><th>decisions</th><th>accepted</th><th>escalated</th><th>rejected</th>\
<th>hallucinations</th><th>false alarms</th></tr>",
            esc(tenant)
        );
        for r in &rows {
            let _ = write!(
                out,
                "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.window.as_str(),
                count(r.decisions),
                count(r.accepted),
                count(r.escalated),
                count(r.rejected),
                count(r.hallucinations_reported),
                count(r.false_alarms),
            );
        }
        out.push_str(
            "</table></div><div class=\"scroll\"><table><tr><th>window</th><th>containment</th><th>escalation</th><th>false-alarm rate</th>\
<th>cost / trusted task</th><th>total cost</th><th>p95 verify</th><th>audit coverage</th>\
<th>SLO containment</th><th>SLO escalation</th><th>SLO latency</th></tr>",
        );
        for r in &rows {
            let _ = write!(
                out,
                "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}{}{}</tr>",
                r.window.as_str(),
                pct(r.containment_rate),
                pct(r.escalation_rate),
                pct(r.false_alarm_rate),
                usd(r.cost_per_trusted_task_usd),
                usd(Some(r.cost_breakdown_usd.total)),
                r.verify_latency_p95_ms
                    .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3} ms")),
                pct(r.audit_coverage),
                slo_cell(r, "containment"),
                slo_cell(r, "escalation"),
                slo_cell(r, "latency"),
            );
        }
        out.push_str("</table></div></div><div class=\"charts\">");
        let mut by_length = rows.clone();
        by_length.sort_by_key(|r| r.window.minutes());
        for r in by_length {
            out.push_str("<figure>");
            out.push_str(&timeline(r.window.as_str(), &r.decisions_over_time));
            out.push_str("</figure>");
        }
        out.push_str("</div>");
        if let Some(r) = rows.iter().max_by_key(|r| r.window.minutes()) {
            let _ = write!(out, "<h3>Window {}</h3><div>", r.window.as_str());
            out.push_str(&bars(
                "outcomes",
                &[
                    ("accepted".into(), r.accepted as f64),
                    ("escalated".into(), r.escalated as f64),
                    ("rejected".into(), r.rejected as f64),
                ],
                count_f64,
            ));
            let regimes: Vec<(String, f64)> = r
                .regimes
                .iter()
                .map(|(k, v)| (k.clone(), *v as f64))
                .collect();
            out.push_str(&bars("regimes", &regimes, count_f64));
            let c = &r.cost_breakdown_usd;
            out.push_str(&bars(
                "cost (USD)",
                &[
                    ("compute".into(), c.compute),
                    ("storage".into(), c.storage),
                    ("network".into(), c.network),
                    ("anchoring".into(), c.anchoring),
                ],
                format_usd,
            ));
            out.push_str("</div><div>");
            for (name, h) in &r.signals {
                out.push_str(&columns(name, &h.bounds, &h.counts));
            }
            out.push_str("</div>");
        }
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_has_significant_digits_and_zero_is_exactly_zero() {
        let cases = [
            (0.0, "$0"),
            (-0.0, "$0"),
            // 0.80 USD over 194,000 trusted tasks.
            (0.8 / 194_000.0, "$0.00000412"),
            (0.0412, "$0.0412"),
            (0.5, "$0.500"),
            (0.99949, "$0.999"),
            (0.99951, "$1.00"),
            (0.0009996, "$0.00100"),
            (1e-8, "$0.0000000100"),
            (4.123e-12, "$4.12e-12"),
            (f64::MIN_POSITIVE, "$2.23e-308"),
            (1.2345, "$1.23"),
            (12.3, "$12.30"),
            (999.994, "$999.99"),
            (999.996, "$1,000"),
            (1234.4, "$1,234"),
            (1_234_567.8, "$1,234,568"),
            (123_456_789_012_345.0, "$123,456,789,012,345"),
            (1e20, "$1.00e20"),
            (f64::MAX, "$1.80e308"),
            (-1.234, "-$1.23"),
            (-0.000_004_12, "-$0.00000412"),
            (-5000.0, "-$5,000"),
            (f64::NAN, "n/a"),
            (f64::INFINITY, "n/a"),
            (f64::NEG_INFINITY, "n/a"),
        ];
        for (v, want) in cases {
            assert_eq!(format_usd(v), want, "{v:e}");
        }
        // Never a zero for a non-zero amount, across magnitudes.
        for exp in -320..=310 {
            let v = 10f64.powi(exp) * 1.7;
            if v == 0.0 || !v.is_finite() {
                continue;
            }
            let text = format_usd(v);
            assert!(
                text.bytes().any(|b| (b'1'..=b'9').contains(&b)),
                "{v:e} -> {text}"
            );
        }
        assert_eq!(usd(None), "n/a");
    }

    #[test]
    fn counts_and_axis_labels() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(194_000), "194,000");
        assert_eq!(count(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(compact(950), "950");
        assert_eq!(compact(2_500), "2.5k");
        assert_eq!(compact(20_000), "20k");
        assert_eq!(compact(1_000_000), "1M");
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(194_000), 200_000);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
    }

    #[test]
    fn the_timeline_stacks_each_steps_outcomes() {
        // 2026-01-01 00:00 UTC, 60 steps of a minute.
        let start = 1_767_225_600_000;
        let mut s = DecisionSeries {
            step_minutes: 1,
            start_unix_ms: start,
            accepted: vec![0; 60],
            escalated: vec![0; 60],
            rejected: vec![0; 60],
        };
        s.accepted[0] = 1_500;
        s.escalated[0] = 20;
        s.rejected[59] = 3;
        let svg = timeline("1h", &s);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(svg.contains("viewBox=\"0 0 400 190\""), "{svg}");
        assert!(svg.contains("decisions over 1h, per minute (UTC)"), "{svg}");
        assert!(
            svg.contains(
                "<title>Jan 1 00:00 to 00:01: 1,500 accepted, 20 escalated, 0 rejected</title>"
            ),
            "{svg}"
        );
        assert!(
            svg.contains(
                "<title>Jan 1 00:59 to 01:00: 0 accepted, 0 escalated, 3 rejected</title>"
            )
        );
        // Two columns: three rects (the legend's three are separate).
        assert_eq!(svg.matches("<g>").count(), 2);
        assert_eq!(svg.matches("class=\"acc\"").count(), 2);
        assert_eq!(svg.matches("class=\"rej\"").count(), 2);
        // The scale tops at the next 1-2-5 step above 1,520.
        assert!(
            svg.contains(">2k</text>") && svg.contains(">1k</text>"),
            "{svg}"
        );
        assert!(
            svg.contains(">00:00</text>") && svg.contains(">01:00</text>"),
            "{svg}"
        );
        assert!(!svg.contains("no decisions"));

        // 7d: dates on the axis; no decisions: said so.
        let week = DecisionSeries {
            step_minutes: 180,
            start_unix_ms: start,
            accepted: vec![0; 56],
            escalated: vec![0; 56],
            rejected: vec![0; 56],
        };
        let svg = timeline("7d", &week);
        assert!(svg.contains("per 3 h"), "{svg}");
        assert!(svg.contains("no decisions in this window"), "{svg}");
        assert!(svg.contains(">Jan 8 00:00</text>"), "{svg}");
        assert!(!svg.contains("<g>"));
        // A report from a server without the series: an empty chart, no panic.
        let svg = timeline("24h", &DecisionSeries::default());
        assert!(svg.ends_with("</svg>"));
    }
}

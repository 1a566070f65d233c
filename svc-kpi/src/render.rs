//! Rendering KPI reports for people and machines (`flk report kpi`): [`render_json`] and
//! [`render_html`], a self-contained page (inline CSS and SVG charts, no scripts, no external
//! resources) with SLO compliance per tenant and window.

use std::fmt::Write as _;

use crate::report::KpiReport;

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
    v.map_or_else(|| "n/a".to_owned(), |v| format!("${v:.6}"))
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

/// A horizontal bar chart of labelled values, as inline SVG.
fn bars(title: &str, items: &[(String, f64)]) -> String {
    let max = items.iter().map(|(_, v)| *v).fold(0.0_f64, f64::max);
    let (row, label_w, bar_w): (usize, usize, usize) = (18, 110, 260);
    let h = 24 + row * items.len();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" role=\"img\" aria-label=\"{}\"><text x=\"0\" y=\"14\" class=\"t\">{}</text>",
        label_w + bar_w + 80,
        esc(title),
        esc(title)
    );
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
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.6}")
            }
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
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" role=\"img\" aria-label=\"{}\"><text x=\"0\" y=\"14\" class=\"t\">{}</text>",
        h + 40,
        esc(title),
        esc(title)
    );
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

/// A self-contained HTML page: per tenant, a table of every window (counts, rates, costs,
/// latency, audit coverage, SLO compliance) and charts of the widest window's outcomes,
/// regimes, cost breakdown and signal distributions.
pub fn render_html(reports: &[KpiReport], title: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}\
td.ok{{background:#dff5df}}td.bad{{background:#f9d6d6}}td.na{{color:#888}}\
svg{{margin:0 1.5em 1em 0;font-size:11px}}svg .b{{fill:#4a78c2}}svg .t{{font-weight:bold}}\
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
            "<h2>Tenant {}</h2><table><tr><th>window</th><th>decisions</th><th>accepted</th><th>escalated</th><th>rejected</th>\
<th>hallucinations</th><th>false alarms</th><th>containment</th><th>escalation</th><th>false-alarm rate</th>\
<th>cost / trusted task</th><th>total cost</th><th>p95 verify</th><th>audit coverage</th>\
<th>SLO containment</th><th>SLO escalation</th><th>SLO latency</th></tr>",
            esc(tenant)
        );
        for r in &rows {
            let _ = write!(
                out,
                "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}{}{}</tr>",
                r.window.as_str(),
                r.decisions,
                r.accepted,
                r.escalated,
                r.rejected,
                r.hallucinations_reported,
                r.false_alarms,
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
        out.push_str("</table>");
        if let Some(r) = rows.iter().max_by_key(|r| r.window.minutes()) {
            let _ = write!(out, "<h3>Window {}</h3><div>", r.window.as_str());
            out.push_str(&bars(
                "outcomes",
                &[
                    ("accepted".into(), r.accepted as f64),
                    ("escalated".into(), r.escalated as f64),
                    ("rejected".into(), r.rejected as f64),
                ],
            ));
            let regimes: Vec<(String, f64)> = r
                .regimes
                .iter()
                .map(|(k, v)| (k.clone(), *v as f64))
                .collect();
            out.push_str(&bars("regimes", &regimes));
            let c = &r.cost_breakdown_usd;
            out.push_str(&bars(
                "cost (USD)",
                &[
                    ("compute".into(), c.compute),
                    ("storage".into(), c.storage),
                    ("network".into(), c.network),
                    ("anchoring".into(), c.anchoring),
                ],
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

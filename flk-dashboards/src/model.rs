//! The panel model: dashboards, panels, queries and thresholds as Rust values, and their
//! rendering to Grafana dashboard JSON (schemaVersion 39, datasource as the `DS_PROMETHEUS`
//! import input). A panel that needs a service which does not exist yet says so in
//! [`Panel::requires`]; that is rendered into its description and lets the end-to-end test
//! skip exactly those panels.

use serde_json::{Value, json};

/// Grafana dashboard JSON schema version the output targets (Grafana 10.x / 11.x).
pub const SCHEMA_VERSION: u32 = 39;
/// The datasource reference every panel and variable uses: the import input variable.
pub const DATASOURCE_INPUT: &str = "${DS_PROMETHEUS}";
/// Grid width of a Grafana dashboard.
const GRID_WIDTH: u32 = 24;

/// A service a panel needs that does not exist yet (its metrics are not exported by anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requires {
    /// The missing service, e.g. `svc-crr`.
    pub service: &'static str,
    /// What it would provide.
    pub why: &'static str,
}

/// How a panel is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TimeSeries,
    Stat,
    Gauge,
    BarGauge,
    /// A heatmap of histogram buckets (targets with `format: heatmap`).
    Heatmap,
}

impl Kind {
    fn grafana_type(self) -> &'static str {
        match self {
            Kind::TimeSeries => "timeseries",
            Kind::Stat => "stat",
            Kind::Gauge => "gauge",
            Kind::BarGauge => "bargauge",
            Kind::Heatmap => "heatmap",
        }
    }
}

/// Colours of a threshold step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Green,
    Yellow,
    Red,
    Blue,
}

impl Color {
    fn name(self) -> &'static str {
        match self {
            Color::Green => "green",
            Color::Yellow => "yellow",
            Color::Red => "red",
            Color::Blue => "blue",
        }
    }
}

/// Absolute thresholds: the base colour, then `(value, colour)` steps in increasing order
/// (Grafana colours a value with the last step whose value it reaches).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub base: Color,
    pub steps: Vec<(f64, Color)>,
}

impl Thresholds {
    /// Higher is better: red below `yellow_from`, yellow below `green_from`, green above.
    pub fn higher_is_better(yellow_from: f64, green_from: f64) -> Thresholds {
        Thresholds {
            base: Color::Red,
            steps: vec![(yellow_from, Color::Yellow), (green_from, Color::Green)],
        }
    }

    /// Lower is better: green below `yellow_from`, yellow below `red_from`, red from there.
    pub fn lower_is_better(yellow_from: f64, red_from: f64) -> Thresholds {
        Thresholds {
            base: Color::Green,
            steps: vec![(yellow_from, Color::Yellow), (red_from, Color::Red)],
        }
    }

    fn to_json(&self) -> Value {
        let mut steps = vec![json!({ "color": self.base.name(), "value": null })];
        steps.extend(
            self.steps
                .iter()
                .map(|(v, c)| json!({ "color": c.name(), "value": v })),
        );
        json!({ "mode": "absolute", "steps": steps })
    }
}

/// One PromQL query of a panel. Template variables (`$tenant`, `$window`,
/// `$__rate_interval`) are substituted by Grafana.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub expr: String,
    pub legend: String,
}

/// One panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub description: String,
    pub kind: Kind,
    /// Grafana unit id (`percentunit`, `s`, `currencyUSD`, `short`, `reqps`, ...).
    pub unit: &'static str,
    pub targets: Vec<Target>,
    pub thresholds: Option<Thresholds>,
    /// Set when the panel's metrics need a service that does not exist yet.
    pub requires: Option<Requires>,
    pub width: u32,
    pub height: u32,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Panel {
    pub fn new(kind: Kind, title: &str, description: &str) -> Panel {
        let (width, height) = match kind {
            Kind::Stat | Kind::Gauge => (6, 5),
            Kind::TimeSeries | Kind::BarGauge | Kind::Heatmap => (12, 8),
        };
        Panel {
            title: title.to_owned(),
            description: description.to_owned(),
            kind,
            unit: "short",
            targets: Vec::new(),
            thresholds: None,
            requires: None,
            width,
            height,
            min: None,
            max: None,
        }
    }

    pub fn query(mut self, expr: &str, legend: &str) -> Panel {
        self.targets.push(Target {
            expr: expr.to_owned(),
            legend: legend.to_owned(),
        });
        self
    }

    pub fn unit(mut self, unit: &'static str) -> Panel {
        self.unit = unit;
        self
    }

    pub fn thresholds(mut self, t: Thresholds) -> Panel {
        self.thresholds = Some(t);
        self
    }

    pub fn requires(mut self, service: &'static str, why: &'static str) -> Panel {
        self.requires = Some(Requires { service, why });
        self
    }

    pub fn size(mut self, width: u32, height: u32) -> Panel {
        self.width = width;
        self.height = height;
        self
    }

    pub fn range(mut self, min: f64, max: f64) -> Panel {
        self.min = Some(min);
        self.max = Some(max);
        self
    }

    /// The description Grafana shows: the panel's own, then what it needs, if anything.
    pub fn full_description(&self) -> String {
        match &self.requires {
            None => self.description.clone(),
            Some(r) => format!(
                "{} Needs {} ({}), which does not exist yet: this panel shows no data until it does.",
                self.description, r.service, r.why
            ),
        }
    }

    fn to_json(&self, id: u32, x: u32, y: u32) -> Value {
        let datasource = datasource();
        let heatmap = self.kind == Kind::Heatmap;
        let targets: Vec<Value> = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut target = json!({
                    "datasource": datasource,
                    "expr": t.expr,
                    "legendFormat": t.legend,
                    "refId": ref_id(i),
                    "range": true,
                    "instant": false,
                });
                if heatmap {
                    target["format"] = json!("heatmap");
                }
                target
            })
            .collect();
        let mut defaults = json!({ "unit": self.unit });
        if let Some(t) = &self.thresholds {
            defaults["thresholds"] = t.to_json();
            defaults["color"] = json!({ "mode": "thresholds" });
        }
        if let Some(min) = self.min {
            defaults["min"] = json!(min);
        }
        if let Some(max) = self.max {
            defaults["max"] = json!(max);
        }
        let reduce = json!({ "calcs": ["lastNotNull"], "fields": "", "values": false });
        let options = match self.kind {
            Kind::TimeSeries => json!({
                "legend": { "displayMode": "list", "placement": "bottom", "showLegend": true },
                "tooltip": { "mode": "multi", "sort": "desc" },
            }),
            Kind::Stat => json!({
                "reduceOptions": reduce,
                "colorMode": "background",
                "graphMode": "area",
                "textMode": "auto",
            }),
            Kind::Gauge => json!({
                "reduceOptions": reduce,
                "showThresholdMarkers": true,
            }),
            Kind::BarGauge => json!({
                "reduceOptions": reduce,
                "orientation": "horizontal",
                "displayMode": "gradient",
            }),
            Kind::Heatmap => json!({
                "calculate": false,
                "yAxis": { "axisPlacement": "left" },
                "color": { "mode": "scheme", "scheme": "Oranges", "steps": 64 },
                "cellGap": 1,
            }),
        };
        let mut panel = json!({
            "id": id,
            "type": self.kind.grafana_type(),
            "title": self.title,
            "description": self.full_description(),
            "datasource": datasource,
            "gridPos": { "h": self.height, "w": self.width, "x": x, "y": y },
            "fieldConfig": { "defaults": defaults, "overrides": [] },
            "options": options,
            "targets": targets,
        });
        if self.kind == Kind::TimeSeries && self.thresholds.is_some() {
            panel["fieldConfig"]["defaults"]["custom"] =
                json!({ "thresholdsStyle": { "mode": "line" } });
        }
        panel
    }
}

/// A dashboard row: a title and the panels under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub title: String,
    pub panels: Vec<Panel>,
}

/// A template variable filled from `label_values(metric, label)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: &'static str,
    pub label: &'static str,
    pub metric: &'static str,
    /// Several values at once (queries then use `label=~"$name"`), with an "All" option.
    pub multi: bool,
    /// The initially selected value of a single-value variable.
    pub default: Option<&'static str>,
}

impl Variable {
    pub fn definition(&self) -> String {
        format!("label_values({}, {})", self.metric, self.name)
    }

    fn to_json(&self) -> Value {
        let definition = self.definition();
        let current = match self.default {
            Some(v) => json!({ "selected": true, "text": v, "value": v }),
            None => json!({}),
        };
        let mut v = json!({
            "type": "query",
            "name": self.name,
            "label": self.label,
            "datasource": datasource(),
            "definition": definition,
            "query": { "query": definition, "refId": "PrometheusVariableQueryEditor-VariableQuery" },
            "refresh": 2,
            "sort": 1,
            "multi": self.multi,
            "includeAll": self.multi,
            "current": current,
            "options": [],
            "hide": 0,
        });
        if self.multi {
            v["allValue"] = json!(".*");
        }
        v
    }
}

/// A dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// Stable uid (links survive re-imports) and the output file's stem.
    pub uid: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub tags: Vec<&'static str>,
    pub variables: Vec<Variable>,
    pub rows: Vec<Row>,
}

impl Dashboard {
    /// Every panel, in order.
    pub fn panels(&self) -> impl Iterator<Item = &Panel> {
        self.rows.iter().flat_map(|r| r.panels.iter())
    }

    /// The output file name.
    pub fn file_name(&self) -> String {
        format!("{}.json", self.uid)
    }

    /// The Grafana JSON: rows, panels laid out left to right, wrapping at the grid width.
    pub fn to_json(&self) -> Value {
        let mut panels = Vec::new();
        let mut id = 1;
        let mut y = 0;
        for row in &self.rows {
            panels.push(json!({
                "id": id,
                "type": "row",
                "title": row.title,
                "collapsed": false,
                "gridPos": { "h": 1, "w": GRID_WIDTH, "x": 0, "y": y },
                "panels": [],
            }));
            id += 1;
            y += 1;
            let (mut x, mut line_height) = (0, 0);
            for p in &row.panels {
                if x + p.width > GRID_WIDTH {
                    y += line_height;
                    x = 0;
                    line_height = 0;
                }
                panels.push(p.to_json(id, x, y));
                id += 1;
                x += p.width;
                line_height = line_height.max(p.height);
            }
            y += line_height;
        }
        json!({
            "__inputs": [{
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "the Prometheus that scrapes the gateway's /metrics (flk up) or every service",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }],
            "__requires": [
                { "type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0" },
                { "type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0" },
            ],
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": true,
            "graphTooltip": 1,
            "refresh": "30s",
            "time": { "from": "now-6h", "to": "now" },
            "timezone": "utc",
            "annotations": { "list": [] },
            "links": [],
            "templating": { "list": self.variables.iter().map(Variable::to_json).collect::<Vec<_>>() },
            "panels": panels,
        })
    }

    /// The file contents: pretty JSON with a trailing newline.
    pub fn render(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.to_json())
            .expect("a serde_json::Value always serializes");
        s.push('\n');
        s
    }
}

fn datasource() -> Value {
    json!({ "type": "prometheus", "uid": DATASOURCE_INPUT })
}

fn ref_id(i: usize) -> String {
    let letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let letter = char::from(letters[i % letters.len()]);
    if i < letters.len() {
        letter.to_string()
    } else {
        format!("{letter}{}", i / letters.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requires_is_rendered_into_the_description() {
        let p = Panel::new(Kind::Stat, "CRR lag", "Replication lag.")
            .query("flk_crr_lag_seconds", "")
            .requires("svc-crr", "cross-region replication");
        let j = p.to_json(1, 0, 0);
        let d = j["description"].as_str().unwrap();
        assert!(d.contains("Needs svc-crr"), "{d}");
    }

    #[test]
    fn layout_wraps_at_the_grid_width() {
        let panels = (0..5)
            .map(|i| Panel::new(Kind::Stat, &format!("p{i}"), "").query("up", ""))
            .collect();
        let d = Dashboard {
            uid: "t",
            title: "t",
            description: "",
            tags: vec![],
            variables: vec![],
            rows: vec![Row {
                title: "r".into(),
                panels,
            }],
        };
        let j = d.to_json();
        let pos: Vec<(u64, u64)> = j["panels"].as_array().unwrap()[1..]
            .iter()
            .map(|p| {
                (
                    p["gridPos"]["x"].as_u64().unwrap(),
                    p["gridPos"]["y"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(pos, vec![(0, 1), (6, 1), (12, 1), (18, 1), (0, 6)]);
    }

    #[test]
    fn thresholds_start_with_a_null_base_step() {
        let t = Thresholds::higher_is_better(0.98, 0.99).to_json();
        assert_eq!(t["steps"][0], json!({ "color": "red", "value": null }));
        assert_eq!(t["steps"][2], json!({ "color": "green", "value": 0.99 }));
    }
}

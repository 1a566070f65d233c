//! PDF: A4 pages of text in the built-in Helvetica fonts (no font file shipped; the text is
//! extractable, e.g. by `pdftotext`), wrapped to the page width and paginated.

use printpdf::{
    BuiltinFont, IndirectFontRef, Mm, PdfDocument, PdfDocumentReference, PdfLayerReference,
};

use super::RenderError;
use crate::model::{Report, Status};

const PAGE_W: f32 = 210.0;
const PAGE_H: f32 = 297.0;
const MARGIN: f32 = 18.0;
const PT_TO_MM: f32 = 0.352_778;

/// Width of a character of Helvetica in thousandths of the font size. printpdf does not
/// measure built-in fonts, so wrapping needs an estimate; this groups the Helvetica AFM
/// widths into a few classes and rounds each class up, so a line never runs past the margin.
fn char_width(c: char) -> f32 {
    match c {
        'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' | ' ' | 'I' => 278.0,
        'f' | 't' | 'r' | '(' | ')' | '[' | ']' | '/' | '-' | '"' => 389.0,
        'm' | 'M' | 'W' => 944.0,
        'w' | '@' | '%' => 1015.0,
        'A'..='Z' => 778.0,
        _ => 611.0,
    }
}

/// The built-in fonts are WinAnsi-encoded and printpdf drops characters outside it without a
/// trace: show each such character as `?` so that a reader sees something was there.
fn latin1(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' '..='~' | '\u{a0}'..='\u{ff}' => c,
            c if c.is_whitespace() => ' ',
            _ => '?',
        })
        .collect()
}

fn text_width_mm(s: &str, size: f32) -> f32 {
    s.chars().map(char_width).sum::<f32>() / 1000.0 * size * PT_TO_MM
}

/// Splits `text` into lines no wider than `width_mm` at `size`, at spaces; a word wider than
/// a line is cut.
fn wrap(text: &str, size: f32, width_mm: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if text_width_mm(&candidate, size) <= width_mm {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        let mut rest = word.to_string();
        while text_width_mm(&rest, size) > width_mm {
            let mut cut = String::new();
            for c in rest.chars() {
                if text_width_mm(&format!("{cut}{c}"), size) > width_mm {
                    break;
                }
                cut.push(c);
            }
            if cut.is_empty() {
                break;
            }
            rest = rest[cut.len()..].to_string();
            lines.push(cut);
        }
        line = rest;
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

struct Writer {
    doc: PdfDocumentReference,
    layer: PdfLayerReference,
    regular: IndirectFontRef,
    bold: IndirectFontRef,
    y: f32,
    page: u32,
}

impl Writer {
    fn new(title: &str) -> Result<Writer, RenderError> {
        let (doc, page, layer) = PdfDocument::new(title, Mm(PAGE_W), Mm(PAGE_H), "text");
        let err = |e: printpdf::Error| RenderError::Pdf(e.to_string());
        let regular = doc.add_builtin_font(BuiltinFont::Helvetica).map_err(err)?;
        let bold = doc
            .add_builtin_font(BuiltinFont::HelveticaBold)
            .map_err(err)?;
        let layer = doc.get_page(page).get_layer(layer);
        let mut w = Writer {
            doc,
            layer,
            regular,
            bold,
            y: PAGE_H - MARGIN,
            page: 1,
        };
        w.footer();
        Ok(w)
    }

    fn footer(&mut self) {
        self.layer.use_text(
            format!("Page {}", self.page),
            8.0,
            Mm(PAGE_W - MARGIN - 12.0),
            Mm(MARGIN / 2.0),
            &self.regular,
        );
    }

    fn new_page(&mut self) {
        let (page, layer) = self.doc.add_page(Mm(PAGE_W), Mm(PAGE_H), "text");
        self.layer = self.doc.get_page(page).get_layer(layer);
        self.page += 1;
        self.y = PAGE_H - MARGIN;
        self.footer();
    }

    /// Writes `text` wrapped at `size` points, `indent` mm from the left margin.
    fn text(&mut self, text: &str, size: f32, bold: bool, indent: f32) {
        let leading = size * PT_TO_MM * 1.3;
        for line in wrap(&latin1(text), size, PAGE_W - 2.0 * MARGIN - indent) {
            if self.y - leading < MARGIN {
                self.new_page();
            }
            self.y -= leading;
            let font = if bold { &self.bold } else { &self.regular };
            self.layer
                .use_text(line, size, Mm(MARGIN + indent), Mm(self.y), font);
        }
    }

    fn gap(&mut self, mm: f32) {
        self.y -= mm;
    }

    /// Starts a new page unless `mm` of height are left: keeps a heading with what follows.
    fn keep(&mut self, mm: f32) {
        if self.y - mm < MARGIN {
            self.new_page();
        }
    }
}

pub(super) fn render(report: &Report) -> Result<Vec<u8>, RenderError> {
    let title = format!("{} compliance report", report.framework.title);
    let mut w = Writer::new(&title)?;
    w.text(&title, 16.0, true, 0.0);
    w.gap(2.0);
    let source = match report.framework.source {
        crate::framework::Source::Builtin => "built-in",
        crate::framework::Source::File => "from a file",
    };
    w.text(
        &format!("Framework: {} ({source})", report.framework.id),
        10.0,
        false,
        0.0,
    );
    w.text(
        &format!(
            "Period: from {} (inclusive) to {} (exclusive)",
            report.period.from_rfc3339(),
            report.period.to_rfc3339()
        ),
        10.0,
        false,
        0.0,
    );
    let s = &report.summary;
    w.text(
        &format!(
            "Summary: {} controls: {} pass, {} fail, {} not applicable, {} manual",
            s.controls, s.pass, s.fail, s.not_applicable, s.manual
        ),
        10.0,
        true,
        0.0,
    );
    let (a, e, r) = report
        .timeline
        .iter()
        .fold((0u64, 0u64, 0u64), |(a, e, r), d| {
            (a + d.accept, e + d.escalate, r + d.reject)
        });
    w.text(
        &format!(
            "Decisions in the period: {a} accept, {e} escalate, {r} reject over {} days with decisions",
            report.timeline.len()
        ),
        10.0,
        false,
        0.0,
    );
    w.gap(4.0);
    for c in &report.controls {
        w.gap(2.0);
        w.text(
            &format!("Control {}: {}", c.id, c.status.as_str()),
            11.0,
            true,
            0.0,
        );
        w.text(
            &format!("{} (rule {})", c.title, c.rule.as_str()),
            9.0,
            false,
            4.0,
        );
        if !c.description.trim().is_empty() {
            w.text(&c.description, 8.5, false, 4.0);
        }
        if c.evidence.is_empty() && c.status == Status::Manual {
            w.text(
                "No automated evidence: a person judges this control.",
                8.5,
                false,
                4.0,
            );
        }
        for ev in &c.evidence {
            w.keep(12.0);
            w.text(
                &format!("Evidence {}: {}", ev.kind, ev.status.as_str()),
                9.0,
                true,
                8.0,
            );
            w.text(&ev.detail, 8.5, false, 12.0);
            if !ev.figures.is_empty() {
                let figures = ev
                    .figures
                    .iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => format!("{k} = {s}"),
                        other => format!("{k} = {other}"),
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                w.text(&format!("Figures: {figures}"), 8.0, false, 12.0);
            }
            for sample in &ev.samples {
                w.text(
                    &format!(
                        "Sample: tenant {} pcs {} leaf {} ({} anchors); check with flk audit verify --bundle on its proof from the JSON report",
                        sample.tenant_id,
                        sample.pcs_id,
                        sample.leaf_index,
                        sample.anchors.len()
                    ),
                    8.0,
                    false,
                    12.0,
                );
            }
        }
    }
    w.doc
        .save_to_bytes()
        .map_err(|e| RenderError::Pdf(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_the_fonts_lack_become_question_marks() {
        assert_eq!(latin1("tenant 测试 café\tx"), "tenant ?? café x");
    }

    #[test]
    fn wrap_keeps_lines_within_the_width_and_every_word() {
        let text = "word ".repeat(200) + &"x".repeat(300);
        let lines = wrap(&text, 9.0, 100.0);
        assert!(lines.len() > 5);
        for l in &lines {
            assert!(text_width_mm(l, 9.0) <= 100.0, "{l}");
        }
        assert_eq!(lines.concat().replace(' ', ""), text.replace(' ', ""));
    }
}

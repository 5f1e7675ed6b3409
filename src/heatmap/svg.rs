//! One matrix as an SVG document: zone bands, labels, cells with their hover text, the legend.

use std::fmt::Write as _;

use super::layout::{char_w, layout, Label, PAD};
use super::matrix::{Matrix, View, LEGEND};

const NOTE: &str = "rows: source agent · columns: destination · outlined: named in a finding · hover a cell for figures";

/// The legend of a view: (label, fill).
fn legend(view: View) -> Vec<(&'static str, &'static str)> {
    if view == View::Mtu {
        return vec![
            ("path MTU ok", "#1a9850"),
            ("MTU mismatch", "#f46d43"),
            ("MTU black hole", "#8b0000"),
            ("unknown", "#d9d9d9"),
            ("no data from source", "#ffffff"),
        ];
    }
    LEGEND
        .into_iter()
        .filter(|(_, fill)| *fill != "#f46d43")
        .collect()
}

/// Width the legend and the note below it need.
pub(super) fn legend_width(view: View) -> f64 {
    let items: f64 = legend(view)
        .iter()
        .map(|(l, _)| 13.0 + l.chars().count() as f64 * char_w(10.0) + 10.0)
        .sum();
    items.max(NOTE.chars().count() as f64 * char_w(10.0)) + PAD
}

// ---- rendering ------------------------------------------------------------------------------

/// Escape text for XML/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

fn num(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

fn text_el(out: &mut String, l: &Label, font: f64, class: &str) {
    let title = if l.text != l.full {
        format!("<title>{}</title>", escape(&l.full))
    } else {
        String::new()
    };
    if l.vertical {
        // Rotated -90°: drawn upward from the box's bottom edge, centred on its x extent.
        let _ = write!(
            out,
            r#"<text class="{class}" font-size="{f}" transform="translate({x},{y}) rotate(-90)" dominant-baseline="central">{t}{title}</text>"#,
            f = num(font),
            x = num(l.bbox.x + l.bbox.w / 2.0),
            y = num(l.bbox.y + l.bbox.h),
            t = escape(&l.text),
        );
    } else {
        let _ = write!(
            out,
            r#"<text class="{class}" font-size="{f}" x="{x}" y="{y}" dominant-baseline="central">{t}{title}</text>"#,
            f = num(font),
            x = num(l.bbox.x),
            y = num(l.bbox.y + l.bbox.h / 2.0),
            t = escape(&l.text),
        );
    }
}

/// One matrix as a standalone SVG document (also embedded inline in the page).
pub fn svg(m: &Matrix) -> String {
    let lay = layout(&m.rows, &m.cols);
    let width = lay.width.max(legend_width(m.view) + PAD);
    let mut o = String::with_capacity(256 + m.rows.len() * m.cols.len() * 160);
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" data-view="{v}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans Mono, monospace"><title>meshprobe {v}: source (rows) × destination (columns)</title>"#,
        v = m.view.as_str(),
        w = num(width),
        h = num(lay.height),
    );
    // Zone bands behind the grid, alternating shades.
    for (i, (g, x, len)) in lay.col_bands.iter().enumerate() {
        let _ = write!(
            o,
            r##"<rect class="band" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>"##,
            num(*x),
            num(PAD),
            num(*len),
            num(lay.grid.y - PAD),
            if i % 2 == 0 { "#eef3fb" } else { "#f8f1e7" },
            escape(g)
        );
    }
    for (i, (g, y, len)) in lay.row_bands.iter().enumerate() {
        let _ = write!(
            o,
            r##"<rect class="band" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>"##,
            num(PAD),
            num(*y),
            num(lay.grid.x - PAD),
            num(*len),
            if i % 2 == 0 { "#eef3fb" } else { "#f8f1e7" },
            escape(g)
        );
    }
    for l in &lay.zone_labels {
        text_el(&mut o, l, lay.font, "zone");
    }
    for (l, h) in lay.col_labels.iter().zip(&m.cols) {
        text_el(
            &mut o,
            l,
            lay.font,
            if h.suspect { "col suspect" } else { "col" },
        );
    }
    for (l, h) in lay.row_labels.iter().zip(&m.rows) {
        text_el(
            &mut o,
            l,
            lay.font,
            if h.suspect { "row suspect" } else { "row" },
        );
    }
    let size = num(lay.cell - 1.0);
    for ((row, y), cells) in m.rows.iter().zip(&lay.row_y).zip(&m.cells) {
        let _ = write!(o, r#"<g class="r" data-src="{}">"#, escape(&row.name));
        for ((col, x), c) in m.cols.iter().zip(&lay.col_x).zip(cells) {
            let _ = write!(
                o,
                r#"<rect x="{x}" y="{y}" width="{size}" height="{size}" fill="{fill}"{f} data-dst="{dst}" data-state="{state}"{loss}><title>{tip}</title></rect>"#,
                x = num(*x),
                y = num(*y),
                fill = c.fill,
                state = c.state.as_str(),
                f = if c.in_finding {
                    r#" class="finding""#
                } else {
                    ""
                },
                dst = escape(&col.name),
                loss = c
                    .loss
                    .map(|l| format!(r#" data-loss="{l:.3}""#))
                    .unwrap_or_default(),
                tip = escape(&c.tip),
            );
        }
        o.push_str("</g>");
    }
    // Legend.
    let ly = lay.grid.y + lay.grid.h + PAD + 8.0;
    let mut lx = PAD;
    for (label, fill) in legend(m.view) {
        let _ = write!(
            o,
            r##"<rect x="{}" y="{}" width="10" height="10" fill="{fill}" stroke="#999"/><text font-size="10" x="{}" y="{}" dominant-baseline="central">{}</text>"##,
            num(lx),
            num(ly),
            num(lx + 13.0),
            num(ly + 5.0),
            escape(label)
        );
        lx += 13.0 + label.chars().count() as f64 * char_w(10.0) + 10.0;
    }
    let _ = write!(
        o,
        r##"<text font-size="10" x="{}" y="{}" dominant-baseline="central" fill="#555">{NOTE}</text>"##,
        num(PAD),
        num(ly + 24.0)
    );
    o.push_str(r#"<style>.finding{stroke:#000;stroke-width:2}[data-state=nodata]{stroke:#aaa;stroke-dasharray:2 2}.suspect{fill:#b2182b;font-weight:bold}.zone{font-weight:bold;fill:#345}</style>"#);
    o.push_str("</svg>");
    o
}

//! The geometry: positions of cells, labels and zone bands, so that labels never overlap, at
//! 5 nodes or 200.

use super::matrix::Head;

/// Longest label shown; longer names are cut with `…` (the full name is in the label's title).
pub const MAX_LABEL_CHARS: usize = 24;
pub(super) const PAD: f64 = 4.0;
/// Space between two zone groups.
pub const ZONE_GAP: f64 = 6.0;

/// An axis-aligned box (a label's extent), for overlap checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
}

/// A label: its text (possibly cut), its full text, its box and how it is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub text: String,
    pub full: String,
    pub bbox: Rect,
    pub vertical: bool,
}

/// Where everything goes. Monospace text, so a label's width is its length × 0.6 em.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub cell: f64,
    pub font: f64,
    pub col_x: Vec<f64>,
    pub row_y: Vec<f64>,
    pub row_labels: Vec<Label>,
    pub col_labels: Vec<Label>,
    /// Zone names along the top (over columns) and the left (beside rows).
    pub zone_labels: Vec<Label>,
    /// Zone bands: (group, x or y start, length), for columns then rows.
    pub col_bands: Vec<(String, f64, f64)>,
    pub row_bands: Vec<(String, f64, f64)>,
    pub grid: Rect,
    pub width: f64,
    pub height: f64,
}

/// Advance width of one monospace character at `font` px.
pub fn char_w(font: f64) -> f64 {
    0.6 * font
}

/// Cut `s` to at most `max` characters, marking the cut with `…`.
pub fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else if max == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Offsets of items along one axis: `cell` each, `ZONE_GAP` between groups.
fn offsets(heads: &[Head], start: f64, cell: f64) -> (Vec<f64>, Vec<(String, f64, f64)>, f64) {
    let mut pos = Vec::with_capacity(heads.len());
    let mut bands: Vec<(String, f64, f64)> = Vec::new();
    let mut at = start;
    for (i, h) in heads.iter().enumerate() {
        if i > 0 && heads[i - 1].group != h.group {
            at += ZONE_GAP;
        }
        match bands.last_mut() {
            Some(b) if b.0 == h.group => b.2 += cell,
            _ => bands.push((h.group.clone(), at, cell)),
        }
        pos.push(at);
        at += cell;
    }
    (pos, bands, at - start)
}

/// Lay out a matrix: cells of 22 px (12 px text) up to 30 rows, 13 px (10 px text) above.
pub fn layout(rows: &[Head], cols: &[Head]) -> Layout {
    let big = rows.len().max(cols.len()) > 30;
    let (cell, font) = if big { (13.0, 10.0) } else { (22.0, 12.0) };
    let cw = char_w(font);
    let longest = |hs: &[Head]| {
        hs.iter()
            .map(|h| fit(&h.name, MAX_LABEL_CHARS).chars().count())
            .max()
            .unwrap_or(1) as f64
            * cw
    };
    let row_label_w = longest(rows).max(cw);
    let col_label_h = longest(cols).max(cw);
    // Left: zone column (vertical text, one line), then row labels (right-aligned), then grid.
    let zone_col_x = PAD;
    let x0 = (zone_col_x + font + PAD + row_label_w + PAD).ceil();
    let zone_row_y = PAD;
    let y0 = (zone_row_y + font + PAD + col_label_h + PAD).ceil();
    let (col_x, col_bands, grid_w) = offsets(cols, x0, cell);
    let (row_y, row_bands, grid_h) = offsets(rows, y0, cell);
    let inset = (cell - font) / 2.0;
    let row_labels = rows
        .iter()
        .zip(&row_y)
        .map(|(h, &y)| {
            let text = fit(&h.name, MAX_LABEL_CHARS);
            let w = text.chars().count() as f64 * cw;
            Label {
                bbox: Rect {
                    x: x0 - PAD - w,
                    y: y + inset,
                    w,
                    h: font,
                },
                text,
                full: h.name.clone(),
                vertical: false,
            }
        })
        .collect();
    let col_labels = cols
        .iter()
        .zip(&col_x)
        .map(|(h, &x)| {
            let text = fit(&h.name, MAX_LABEL_CHARS);
            let len = text.chars().count() as f64 * cw;
            Label {
                bbox: Rect {
                    x: x + inset,
                    y: y0 - PAD - len,
                    w: font,
                    h: len,
                },
                text,
                full: h.name.clone(),
                vertical: true,
            }
        })
        .collect();
    let mut zone_labels = Vec::new();
    for (g, x, len) in &col_bands {
        let n = ((len / cw).floor() as usize).min(MAX_LABEL_CHARS);
        let text = fit(g, n);
        if text.is_empty() {
            continue;
        }
        zone_labels.push(Label {
            bbox: Rect {
                x: *x,
                y: zone_row_y,
                w: text.chars().count() as f64 * cw,
                h: font,
            },
            text,
            full: g.clone(),
            vertical: false,
        });
    }
    for (g, y, len) in &row_bands {
        let n = ((len / cw).floor() as usize).min(MAX_LABEL_CHARS);
        let text = fit(g, n);
        if text.is_empty() {
            continue;
        }
        let l = text.chars().count() as f64 * cw;
        zone_labels.push(Label {
            // Vertical, reading bottom-up, ending at the band's top.
            bbox: Rect {
                x: zone_col_x,
                y: *y,
                w: font,
                h: l,
            },
            text,
            full: g.clone(),
            vertical: true,
        });
    }
    let grid = Rect {
        x: x0,
        y: y0,
        w: grid_w,
        h: grid_h,
    };
    Layout {
        cell,
        font,
        col_x,
        row_y,
        row_labels,
        col_labels,
        zone_labels,
        col_bands,
        row_bands,
        width: x0 + grid_w + PAD,
        height: y0 + grid_h + PAD + LEGEND_H,
        grid,
    }
}

const LEGEND_H: f64 = 44.0;

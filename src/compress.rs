//! gzip for the agent's large answers (`/metrics`, the page, `/heatmap.svg`): Prometheus and
//! browsers ask for it; a 1,000-peer scrape (~4 MB) or a 200-node page (~10 MB per layer)
//! shrinks about tenfold. Pure: header parsing and in-memory compression.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Smaller bodies go as they are (the gzip header and the CPU are not worth it).
pub const MIN_BYTES: usize = 1024;

/// Whether an `Accept-Encoding` value accepts gzip: listed (or `*`) with a q-value above 0.
/// An explicit `gzip;q=0` wins over `*`.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(v) = accept_encoding else {
        return false;
    };
    let mut star = None;
    for item in v.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| v.trim().parse::<f32>().ok())
                    .flatten()
            })
            .next()
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return q > 0.0;
        }
        if coding == "*" {
            star = Some(q > 0.0);
        }
    }
    star.unwrap_or(false)
}

/// gzip at the fastest level: a scrape is compressed every 15 s on a node we share.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::with_capacity(body.len() / 6 + 64), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(body);
    e.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn accept_encoding_table() {
        let table: [(Option<&str>, bool); 12] = [
            (None, false),
            (Some(""), false),
            (Some("gzip"), true),
            (Some("GZIP"), true),
            (Some("deflate, gzip;q=0.5"), true),
            (Some("gzip;q=0"), false),
            (Some("gzip; q=0.0, *"), false),
            (Some("*"), true),
            (Some("*;q=0"), false),
            (Some("identity"), false),
            (Some("br, x-gzip"), true),
            (Some("gzip;q=nonsense"), true),
        ];
        for (v, want) in table {
            assert_eq!(accepts_gzip(v), want, "{v:?}");
        }
    }

    #[test]
    fn round_trip_and_shrinks_repetitive_text() {
        let text = "meshprobe_pair_reachable{src_node=\"a\",dst=\"b\"} 1\n".repeat(2000);
        let z = gzip(text.as_bytes());
        assert!(z.len() * 10 < text.len(), "{} -> {}", text.len(), z.len());
        let mut out = String::new();
        GzDecoder::new(&z[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, text);
    }
}

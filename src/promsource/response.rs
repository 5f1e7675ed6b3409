//! Prometheus' `GET /api/v1/query` answers → instant-vector samples (pure), every failure an
//! error naming the query.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One sample of an instant vector: its labels and its value (NaN and ±Inf kept as such).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub(super) fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

#[derive(Deserialize)]
struct Envelope<R> {
    status: String,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
    data: Option<R>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "resultType")]
    result_type: String,
}

#[derive(Deserialize)]
struct VectorData {
    result: Vec<RawSample>,
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (serde_json::Value, String),
}

/// Parse the body of `GET /api/v1/query` for `query`: its instant vector, or an error that names
/// the query (Prometheus's own error, a non-vector result, garbage, too many series, a value
/// that is no number).
pub fn parse_response(query: &str, body: &[u8], max_series: usize) -> Result<Vec<Sample>, String> {
    let fail = |what: String| format!("query {query:?}: {what}");
    let head: Envelope<Head> = match serde_json::from_slice(body) {
        Ok(h) => h,
        Err(e) => {
            let start = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
            return Err(fail(format!(
                "not a Prometheus API answer ({e}); it starts with {start:?}"
            )));
        }
    };
    if head.status != "success" {
        return Err(fail(format!(
            "Prometheus answered {} {}: {}",
            head.status,
            head.error_type.unwrap_or_default(),
            head.error.unwrap_or_default()
        )));
    }
    match head.data {
        Some(h) if h.result_type == "vector" => {}
        Some(h) => {
            return Err(fail(format!(
                "a {} result, not an instant vector",
                h.result_type
            )))
        }
        None => return Err(fail("no data in a success answer".into())),
    }
    let full: Envelope<VectorData> =
        serde_json::from_slice(body).map_err(|e| fail(format!("malformed vector result: {e}")))?;
    let raw = full.data.map(|d| d.result).unwrap_or_default();
    if raw.len() > max_series {
        return Err(fail(format!(
            "{} series, more than the {max_series} allowed",
            raw.len()
        )));
    }
    raw.into_iter()
        .map(|r| {
            // Prometheus writes NaN, +Inf and -Inf as such; Rust's parser reads "inf", not "+Inf".
            let value = match r.value.1.as_str() {
                "+Inf" | "Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v
                    .parse::<f64>()
                    .map_err(|_| fail(format!("sample value {v:?} is not a number")))?,
            };
            Ok(Sample {
                labels: r.metric,
                value,
            })
        })
        .collect()
}

//! Parsers of small user-facing values shared by the agent's configuration, the peers file and
//! the lab: names, durations, HTTP request paths. Each refusal says what is wrong.

use std::time::Duration;

/// Names (nodes, zones, targets) end up in metric labels and URLs: keep them to what Kubernetes
/// allows for object names and label values.
pub fn validate_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err("must be at most 253 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err("may only contain letters, digits, '-', '.' and '_'".into());
    }
    Ok(())
}

/// Parse `500ms`, `5s`, `1.5s`, `2m`, `1h`. A bare number is refused: units are not guessed.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| "missing unit (ms, s, m or h)".to_string())?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{num:?} is not a number"))?;
    let factor = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    let secs = value * factor;
    if !secs.is_finite() || secs > 7.0 * 86400.0 {
        return Err("too large".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Format a duration the way [`parse_duration`] reads it.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Whether `path` is a request target this prober sends as written: it starts with `/`, is
/// printable ASCII without spaces (RFC 3986: everything else is percent-encoded; hyper would
/// send raw UTF-8, and a raw U+FFFF did not survive the agent's own JSON → YAML round trip —
/// found by fuzzing), and hyper parses it (no `` ` `` `"` `<` `>` `{` `}` unencoded).
pub fn is_request_path(path: &str) -> bool {
    path.starts_with('/')
        && path.bytes().all(|b| b.is_ascii_graphic())
        && path.parse::<http::Uri>().is_ok()
}

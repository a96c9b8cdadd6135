//! Wall-clock time as Unix seconds and milliseconds, the units stored.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 in UTC, for API output.
pub fn rfc3339(unix_secs: i64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

pub fn rfc3339_ms(unix_ms: i64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

//! Number and time formatting shared by the panes.

/// `HH:MM:SS` in UTC of a Unix time in milliseconds.
pub fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1_000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `YYYY-MM-DD` in UTC (Howard Hinnant's civil-from-days).
pub fn utc_date(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A round-trip time in microseconds as milliseconds.
pub fn rtt(us: Option<u32>) -> String {
    match us {
        Some(us) => format!("{}.{} ms", us / 1_000, us % 1_000 / 100),
        None => "–".to_string(),
    }
}

/// A loss rate in parts per million as a percentage.
pub fn loss(ppm: Option<u32>) -> String {
    match ppm {
        Some(ppm) => format!("{}.{} %", ppm / 10_000, ppm % 10_000 / 1_000),
        None => "–".to_string(),
    }
}

/// Bytes in binary units, one decimal.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut tenths = u128::from(n) * 10;
    while tenths >= 10_240 && unit < UNITS.len() - 1 {
        tenths /= 1_024;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
    }
}

/// The last `width` values as a bar chart in one line of block characters,
/// scaled from zero to the largest value shown.
pub fn sparkline(values: &[u32], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().copied().max().unwrap_or(0);
    shown
        .iter()
        .map(|&v| {
            if max == 0 {
                BARS[0]
            } else {
                let level = u64::from(v) * 7 / u64::from(max);
                BARS[usize::try_from(level).unwrap_or(7).min(7)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_and_units() {
        assert_eq!(utc_time(1_750_000_000_000), "15:06:40");
        assert_eq!(utc_date(1_750_000_000_000), "2025-06-15");
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(rtt(Some(4_250)), "4.2 ms");
        assert_eq!(loss(Some(15_000)), "1.5 %");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_536), "1.5 KiB");
        assert_eq!(bytes(8_123_456_789), "7.5 GiB");
    }

    #[test]
    fn sparkline_scales_and_keeps_the_newest() {
        assert_eq!(sparkline(&[0, 7, 14], 10), "▁▄█");
        assert_eq!(sparkline(&[5, 0, 0], 2), "▁▁");
        assert_eq!(sparkline(&[], 4), "");
    }
}

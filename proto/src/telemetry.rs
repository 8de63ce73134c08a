//! What an agent tells the controller about the router it runs on (v5):
//! [`NodeInfo`] (what the router is and where it stands; changes rarely)
//! and [`Statistics`] (how it is doing; every [`STATISTICS_INTERVAL_S`]).
//!
//! Both are bounded: every string at most [`MAX_TEXT`] bytes (the model
//! [`MAX_MODEL`]) without control characters, numbers in plausible ranges.
//! The agent builds them with [`bounded_text`]; the controller refuses
//! anything [`NodeInfo::validate`] or [`Statistics::validate`] rejects.
//! Nothing about clients is in here: their count travels in `Clients`.

use serde::{Deserialize, Serialize};

/// How often an agent sends its [`Statistics`].
pub const STATISTICS_INTERVAL_S: u64 = 60;
/// The longest text field, in bytes.
pub const MAX_TEXT: usize = 128;
/// The longest hardware model, in bytes: it becomes a Prometheus label
/// value and a meshviewer statistics row, so it is kept short.
pub const MAX_MODEL: usize = 64;
/// The most CPUs a node may claim.
pub const MAX_NPROC: u16 = 4_096;
/// The highest load average (in hundredths) a node may claim.
pub const MAX_LOAD_CENTI: u32 = 100_000_000;
/// The longest uptime a node may claim: 100 years.
pub const MAX_UPTIME_S: u64 = 100 * 365 * 86_400;
/// Parts per million, the unit of [`Statistics::rootfs_used_ppm`].
pub const PPM: u32 = 1_000_000;

/// What a router is and where it stands. Sent after every Welcome and
/// whenever it changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The agent's version (`CARGO_PKG_VERSION`).
    pub agent_version: String,
    /// Firmware or OS name, e.g. `OpenWrt`, `gluon-v2023.2`, `Debian GNU/Linux`.
    pub firmware_base: Option<String>,
    /// Its release, e.g. `23.05.3`.
    pub firmware_release: Option<String>,
    /// Hardware model, e.g. `TP-Link Archer C7 v5`.
    pub model: Option<String>,
    /// Online CPUs.
    pub nproc: Option<u16>,
    /// Where the router stands, if its owner entered it.
    pub location: Option<Location>,
    /// The owner allows the location on public maps.
    pub share_location: bool,
    /// How to reach the owner, if entered (operators always see it).
    pub contact: Option<String>,
    /// The owner allows the contact on public maps.
    pub share_contact: bool,
    /// The firmware autoupdater's branch, if one is configured.
    pub autoupdater_branch: Option<String>,
    /// The community domain (Gluon's `domain_code`), if configured.
    pub domain: Option<String>,
}

/// A position (WGS 84) in millionths of a degree (about 0.1 m): integers,
/// so every message stays comparable; [`Location::latitude`] and
/// [`Location::longitude`] give degrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub latitude_e6: i32,
    pub longitude_e6: i32,
}

/// Millionths per degree, the unit of [`Location`].
pub const MICRODEGREES: f64 = 1e6;

/// How a router is doing. Integers only, so yanic-style consumers never
/// see `2.0` where they expect `2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Statistics {
    /// Seconds since boot (`/proc/uptime`). The controller turns it into a
    /// boot time with its own clock: a router's clock may be wrong until
    /// NTP answers.
    pub uptime_s: Option<u64>,
    /// 1-minute load average in hundredths (`/proc/loadavg`).
    pub load_centi: Option<u32>,
    /// `MemTotal` in KiB (`/proc/meminfo`).
    pub memory_total_kib: Option<u64>,
    /// `MemAvailable` in KiB.
    pub memory_available_kib: Option<u64>,
    /// Used share of the root filesystem in parts per million.
    pub rootfs_used_ppm: Option<u32>,
}

/// Why the controller refused a [`NodeInfo`] or [`Statistics`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryError {
    #[error("{field} is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("{0} contains control characters")]
    ControlCharacters(&'static str),
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
}

/// `raw` made safe to show: control characters dropped, whitespace at the
/// ends trimmed, cut to at most `max` bytes at a char boundary; `None` when
/// nothing is left.
pub fn bounded_text(raw: &str, max: usize) -> Option<String> {
    let mut out = String::new();
    for c in raw.trim().chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    let out = out.trim_end().to_owned();
    (!out.is_empty()).then_some(out)
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), TelemetryError> {
    if value.len() > max {
        return Err(TelemetryError::TooLong { field, max });
    }
    if value.chars().any(char::is_control) {
        return Err(TelemetryError::ControlCharacters(field));
    }
    Ok(())
}

impl NodeInfo {
    /// Whether every field is within its bound (see the module docs).
    pub fn validate(&self) -> Result<(), TelemetryError> {
        check_text("agent_version", &self.agent_version, MAX_TEXT)?;
        for (field, value, max) in [
            ("firmware_base", &self.firmware_base, MAX_TEXT),
            ("firmware_release", &self.firmware_release, MAX_TEXT),
            ("model", &self.model, MAX_MODEL),
            ("contact", &self.contact, MAX_TEXT),
            ("autoupdater_branch", &self.autoupdater_branch, MAX_TEXT),
            ("domain", &self.domain, MAX_TEXT),
        ] {
            if let Some(v) = value {
                check_text(field, v, max)?;
            }
        }
        if self.nproc.is_some_and(|n| n == 0 || n > MAX_NPROC) {
            return Err(TelemetryError::OutOfRange("nproc"));
        }
        if let Some(l) = self.location
            && !l.is_valid()
        {
            return Err(TelemetryError::OutOfRange("location"));
        }
        Ok(())
    }
}

impl Location {
    /// A position from degrees; `None` unless finite, latitude within
    /// ±90° and longitude within ±180°.
    pub fn from_degrees(latitude: f64, longitude: f64) -> Option<Self> {
        if !(latitude.is_finite() && longitude.is_finite()) {
            return None;
        }
        if latitude.abs() > 90.0 || longitude.abs() > 180.0 {
            return None;
        }
        // In range by the check above, so the casts cannot saturate.
        #[allow(clippy::cast_possible_truncation)]
        Some(Self {
            latitude_e6: (latitude * MICRODEGREES).round() as i32,
            longitude_e6: (longitude * MICRODEGREES).round() as i32,
        })
    }

    /// Latitude within ±90°, longitude within ±180°.
    pub fn is_valid(&self) -> bool {
        self.latitude_e6.unsigned_abs() <= 90_000_000
            && self.longitude_e6.unsigned_abs() <= 180_000_000
    }

    pub fn latitude(&self) -> f64 {
        f64::from(self.latitude_e6) / MICRODEGREES
    }

    pub fn longitude(&self) -> f64 {
        f64::from(self.longitude_e6) / MICRODEGREES
    }
}

impl Statistics {
    /// Whether every value is plausible (see the module docs).
    pub fn validate(&self) -> Result<(), TelemetryError> {
        if self.uptime_s.is_some_and(|u| u > MAX_UPTIME_S) {
            return Err(TelemetryError::OutOfRange("uptime_s"));
        }
        if self.load_centi.is_some_and(|l| l > MAX_LOAD_CENTI) {
            return Err(TelemetryError::OutOfRange("load_centi"));
        }
        if self.rootfs_used_ppm.is_some_and(|r| r > PPM) {
            return Err(TelemetryError::OutOfRange("rootfs_used_ppm"));
        }
        if let (Some(total), Some(available)) = (self.memory_total_kib, self.memory_available_kib)
            && available > total
        {
            return Err(TelemetryError::OutOfRange("memory_available_kib"));
        }
        Ok(())
    }

    /// Used share of memory, 0–1, when both values are known.
    pub fn memory_usage(&self) -> Option<f64> {
        let total = self.memory_total_kib.filter(|t| *t > 0)?;
        let available = self.memory_available_kib?.min(total);
        #[allow(clippy::cast_precision_loss)] // KiB counts are far below 2^52
        Some(1.0 - available as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_text_strips_controls_and_cuts_at_a_char_boundary() {
        assert_eq!(
            bounded_text("  a\u{1b}[31mb\n ", 10).as_deref(),
            Some("a[31mb")
        );
        assert_eq!(bounded_text("ééé", 5).as_deref(), Some("éé"));
        assert_eq!(bounded_text(" \t\n", 5), None);
        assert!(bounded_text(&"x".repeat(10_000), MAX_MODEL).is_some_and(|s| s.len() == MAX_MODEL));
    }

    #[test]
    fn validation_refuses_absurd_values() {
        let mut info = NodeInfo {
            agent_version: "0.3.0".into(),
            nproc: Some(4),
            location: Location::from_degrees(52.5, 13.4),
            ..NodeInfo::default()
        };
        assert_eq!(info.validate(), Ok(()));
        assert_eq!(Location::from_degrees(91.0, 0.0), None);
        assert_eq!(Location::from_degrees(f64::NAN, 0.0), None);
        info.location = Some(Location {
            latitude_e6: 91_000_000,
            longitude_e6: 0,
        });
        assert_eq!(info.validate(), Err(TelemetryError::OutOfRange("location")));
        info.location = None;
        info.model = Some("m".repeat(MAX_MODEL + 1));
        assert!(matches!(
            info.validate(),
            Err(TelemetryError::TooLong { field: "model", .. })
        ));
        info.model = Some("a\u{7}".into());
        assert_eq!(
            info.validate(),
            Err(TelemetryError::ControlCharacters("model"))
        );
        info.model = None;
        info.nproc = Some(0);
        assert_eq!(info.validate(), Err(TelemetryError::OutOfRange("nproc")));

        let mut stats = Statistics {
            uptime_s: Some(3_600),
            load_centi: Some(12),
            memory_total_kib: Some(1_000),
            memory_available_kib: Some(250),
            rootfs_used_ppm: Some(500_000),
        };
        assert_eq!(stats.validate(), Ok(()));
        assert_eq!(stats.memory_usage(), Some(0.75));
        stats.memory_available_kib = Some(2_000);
        assert!(stats.validate().is_err());
        stats.memory_available_kib = None;
        stats.rootfs_used_ppm = Some(PPM + 1);
        assert!(stats.validate().is_err());
    }
}

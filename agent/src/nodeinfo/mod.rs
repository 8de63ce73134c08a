//! What the agent tells the controller about its router (issue 15): the
//! [`NodeInfo`] (version, firmware, model, CPUs, and what the owner
//! configured: location, contact, consent flags, autoupdater branch,
//! domain) and the [`Statistics`] (uptime, load, memory, root file system).
//!
//! [`Collector`] reads a configurable root directory (`/` in the agent, a
//! fixture tree in tests); the parsing is pure ([`parse`]). Every file is
//! read up to [`MAX_FILE_BYTES`], decoded lossily (a non-UTF-8 release
//! file still yields its readable parts), and every string is cut with
//! [`bounded_text`], so a report never exceeds [`MAX_NODE_INFO_BYTES`]
//! whatever the files hold. Nothing about clients is read here.
//!
//! Sources, first found wins:
//! * firmware: Gluon's `/lib/gluon/release` (+ `gluon-version` as base),
//!   else `/etc/openwrt_release` (`DISTRIB_ID`, `DISTRIB_RELEASE`), else
//!   `/etc/os-release` or `/usr/lib/os-release` (`NAME`, `VERSION_ID`);
//! * model: `/tmp/sysinfo/model` (OpenWrt), else DMI
//!   `/sys/class/dmi/id/{sys_vendor,product_name}`;
//! * CPUs: `/sys/devices/system/cpu/online` (`0-3,6`);
//! * `/proc/uptime`, `/proc/loadavg`, `/proc/meminfo`; `statvfs` of the root.

pub mod parse;
mod task;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use task::report_task;

use freimesh_proto::telemetry::{
    Location, MAX_MODEL, MAX_NPROC, MAX_TEXT, NodeInfo, Statistics, bounded_text,
};

/// The most bytes read from any one file: release files and `/proc`
/// entries are far smaller; a hostile or broken file costs no more.
pub const MAX_FILE_BYTES: u64 = 16 * 1_024;
/// The most a [`NodeInfo`] takes on the wire (postcard), with every
/// string at its bound.
pub const MAX_NODE_INFO_BYTES: usize = 1_024;

/// What the owner configured about the node (`[node]` keys in the agent
/// config; UCI options on OpenWrt, `docs/agent-config.md`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfoConfig {
    pub location: Option<Location>,
    /// Public maps may show the location.
    pub share_location: bool,
    pub contact: Option<String>,
    /// Public maps may show the contact (operators always see it).
    pub share_contact: bool,
    pub autoupdater_branch: Option<String>,
    pub domain: Option<String>,
}

/// Reads node information and statistics below a root directory.
#[derive(Debug, Clone)]
pub struct Collector {
    root: PathBuf,
    config: NodeInfoConfig,
}

impl Collector {
    pub fn new(root: impl Into<PathBuf>, config: NodeInfoConfig) -> Self {
        Self {
            root: root.into(),
            config,
        }
    }

    /// `rel` below the root, at most [`MAX_FILE_BYTES`], lossily decoded;
    /// `None` if it cannot be read.
    fn read(&self, rel: &str) -> Option<String> {
        let file = std::fs::File::open(self.root.join(rel)).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES).read_to_end(&mut bytes).ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A one-line file's content, bounded.
    fn read_text(&self, rel: &str, max: usize) -> Option<String> {
        bounded_text(self.read(rel)?.lines().next()?, max)
    }

    /// What the router is, read now.
    pub fn node_info(&self) -> NodeInfo {
        let (firmware_base, firmware_release) = self.firmware();
        let text = |v: &Option<String>| v.as_deref().and_then(|v| bounded_text(v, MAX_TEXT));
        NodeInfo {
            agent_version: bounded_text(env!("CARGO_PKG_VERSION"), MAX_TEXT).unwrap_or_default(),
            firmware_base,
            firmware_release,
            model: self.model(),
            nproc: self
                .read("sys/devices/system/cpu/online")
                .and_then(|t| parse_cpu_list(&t)),
            location: self.config.location.filter(Location::is_valid),
            share_location: self.config.share_location,
            contact: text(&self.config.contact),
            share_contact: self.config.share_contact,
            autoupdater_branch: text(&self.config.autoupdater_branch),
            domain: text(&self.config.domain),
        }
    }

    fn firmware(&self) -> (Option<String>, Option<String>) {
        if let Some(release) = self.read_text("lib/gluon/release", MAX_TEXT) {
            let base = self
                .read_text("lib/gluon/gluon-version", MAX_TEXT - "gluon-".len())
                .map(|v| format!("gluon-{v}"));
            return (base, Some(release));
        }
        let from = |text: String, base_key: &str, release_keys: &[&str]| {
            let base = parse::shell_value(&text, base_key).and_then(|v| bounded_text(&v, MAX_TEXT));
            let release = release_keys
                .iter()
                .find_map(|k| parse::shell_value(&text, k))
                .and_then(|v| bounded_text(&v, MAX_TEXT));
            (base, release)
        };
        if let Some(text) = self.read("etc/openwrt_release") {
            return from(text, "DISTRIB_ID", &["DISTRIB_RELEASE"]);
        }
        match self
            .read("etc/os-release")
            .or_else(|| self.read("usr/lib/os-release"))
        {
            Some(text) => from(text, "NAME", &["VERSION_ID", "VERSION"]),
            None => (None, None),
        }
    }

    fn model(&self) -> Option<String> {
        if let Some(model) = self.read_text("tmp/sysinfo/model", MAX_MODEL) {
            return Some(model);
        }
        let product = self.read_text("sys/class/dmi/id/product_name", MAX_MODEL)?;
        match self.read_text("sys/class/dmi/id/sys_vendor", MAX_MODEL) {
            Some(vendor) if !product.starts_with(&vendor) => {
                bounded_text(&format!("{vendor} {product}"), MAX_MODEL)
            }
            _ => Some(product),
        }
    }

    /// How the router is doing, read now.
    pub fn statistics(&self) -> Statistics {
        let (memory_total_kib, memory_available_kib) = self
            .read("proc/meminfo")
            .map_or((None, None), |t| parse::memory_kib(&t));
        Statistics {
            uptime_s: self.read("proc/uptime").and_then(|t| parse::uptime_s(&t)),
            load_centi: self
                .read("proc/loadavg")
                .and_then(|t| parse::load_centi(&t)),
            memory_total_kib,
            memory_available_kib,
            rootfs_used_ppm: rootfs_used_ppm(&self.root),
        }
    }
}

/// How many CPUs a kernel CPU list (`0-3,6`) names; `None` if unparseable
/// or implausible.
pub fn parse_cpu_list(text: &str) -> Option<u16> {
    let mut count: u32 = 0;
    for part in text.trim().split(',') {
        let n = match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                b.checked_sub(a)?.checked_add(1)?
            }
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
        count = count.checked_add(n)?;
    }
    u16::try_from(count)
        .ok()
        .filter(|n| (1..=MAX_NPROC).contains(n))
}

/// Used share of the file system holding `path`.
fn rootfs_used_ppm(path: &Path) -> Option<u32> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    #[allow(clippy::useless_conversion)] // fsblkcnt_t is u32 on some targets
    parse::used_ppm(u64::from(st.blocks()), u64::from(st.blocks_free()))
}

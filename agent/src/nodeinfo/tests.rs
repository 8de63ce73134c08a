use std::path::Path;

use freimesh_proto::telemetry::{Location, MAX_MODEL, MAX_TEXT};

use super::*;

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(path, bytes).expect("write");
}

fn proc_files(root: &Path) {
    write(root, "proc/uptime", b"3600.25 7000.00\n");
    write(root, "proc/loadavg", b"0.42 0.30 0.25 1/123 4567\n");
    write(
        root,
        "proc/meminfo",
        b"MemTotal:         124680 kB\nMemFree:           40000 kB\nMemAvailable:      61234 kB\n",
    );
    write(root, "sys/devices/system/cpu/online", b"0-3\n");
}

#[test]
fn openwrt_root() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(
        root,
        "etc/openwrt_release",
        b"DISTRIB_ID='OpenWrt'\nDISTRIB_RELEASE='23.05.3'\nDISTRIB_REVISION='r23809-234f1a2efa'\nDISTRIB_TARGET='ath79/generic'\n",
    );
    write(root, "etc/os-release", b"NAME=\"Ignored\"\n");
    write(root, "tmp/sysinfo/model", b"TP-Link Archer C7 v5\n");
    proc_files(root);
    let config = NodeInfoConfig {
        location: Location::from_degrees(52.52, 13.405),
        share_location: true,
        contact: Some("kita@example.org".into()),
        share_contact: false,
        autoupdater_branch: Some("stable".into()),
        domain: Some("city".into()),
    };
    let info = Collector::new(root, config).node_info();
    assert_eq!(info.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.firmware_base.as_deref(), Some("OpenWrt"));
    assert_eq!(info.firmware_release.as_deref(), Some("23.05.3"));
    assert_eq!(info.model.as_deref(), Some("TP-Link Archer C7 v5"));
    assert_eq!(info.nproc, Some(4));
    assert_eq!(info.location, Location::from_degrees(52.52, 13.405));
    assert!(info.share_location && !info.share_contact);
    assert_eq!(info.contact.as_deref(), Some("kita@example.org"));
    assert_eq!(info.autoupdater_branch.as_deref(), Some("stable"));
    assert_eq!(info.domain.as_deref(), Some("city"));
    assert_eq!(info.validate(), Ok(()));

    let stats = Collector::new(root, NodeInfoConfig::default()).statistics();
    assert_eq!(stats.uptime_s, Some(3_600));
    assert_eq!(stats.load_centi, Some(42));
    assert_eq!(stats.memory_total_kib, Some(124_680));
    assert_eq!(stats.memory_available_kib, Some(61_234));
    assert!(
        stats.rootfs_used_ppm.is_some(),
        "statvfs of the fixture's file system"
    );
    assert_eq!(stats.validate(), Ok(()));
}

#[test]
fn gluon_release_wins() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(root, "etc/openwrt_release", b"DISTRIB_ID='OpenWrt'\n");
    write(root, "lib/gluon/release", b"2024.1.0+ffcity\n");
    write(root, "lib/gluon/gluon-version", b"v2023.2.3\n");
    let info = Collector::new(root, NodeInfoConfig::default()).node_info();
    assert_eq!(info.firmware_base.as_deref(), Some("gluon-v2023.2.3"));
    assert_eq!(info.firmware_release.as_deref(), Some("2024.1.0+ffcity"));
}

#[test]
fn debian_root_with_dmi() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(
        root,
        "usr/lib/os-release",
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n",
    );
    write(root, "sys/class/dmi/id/sys_vendor", b"PC Engines\n");
    write(root, "sys/class/dmi/id/product_name", b"apu2\n");
    write(root, "sys/devices/system/cpu/online", b"0-1,3\n");
    let info = Collector::new(root, NodeInfoConfig::default()).node_info();
    assert_eq!(info.firmware_base.as_deref(), Some("Debian GNU/Linux"));
    assert_eq!(info.firmware_release.as_deref(), Some("12"));
    assert_eq!(info.model.as_deref(), Some("PC Engines apu2"));
    assert_eq!(info.nproc, Some(3));
    assert_eq!(info.location, None);
}

#[test]
fn missing_files_leave_fields_empty() {
    let dir = tempfile::tempdir().expect("tmp");
    let collector = Collector::new(dir.path().join("nothing-here"), NodeInfoConfig::default());
    let info = collector.node_info();
    assert_eq!(
        info,
        NodeInfo {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            ..NodeInfo::default()
        }
    );
    let stats = collector.statistics();
    assert_eq!(stats, Statistics::default());
}

#[test]
fn hostile_files_stay_within_the_bound() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let mut release = b"DISTRIB_ID='Open\xff\xfeWrt\x1b[31m'\nDISTRIB_RELEASE='".to_vec();
    release.extend(std::iter::repeat_n(b'9', 10_000));
    release.extend(b"'\n");
    write(root, "etc/openwrt_release", &release);
    write(root, "tmp/sysinfo/model", "Ä".repeat(5_000).as_bytes());
    write(root, "proc/uptime", b"99999999999999999999 1\n");
    write(root, "proc/loadavg", b"NaN\n");
    write(root, "proc/meminfo", &vec![b'x'; 100_000]);
    write(root, "sys/devices/system/cpu/online", b"0-99999\n");
    let long = "\u{7}".to_owned() + &"c".repeat(10_000);
    let config = NodeInfoConfig {
        location: Some(Location {
            latitude_e6: i32::MAX,
            longitude_e6: 0,
        }),
        share_location: true,
        contact: Some(long.clone()),
        share_contact: true,
        autoupdater_branch: Some(long.clone()),
        domain: Some(long),
    };
    let collector = Collector::new(root, config);
    let info = collector.node_info();
    assert_eq!(info.validate(), Ok(()));
    assert_eq!(
        info.firmware_base.as_deref(),
        Some("Open\u{fffd}\u{fffd}Wrt[31m")
    );
    assert_eq!(
        info.firmware_release.as_ref().map(String::len),
        Some(MAX_TEXT)
    );
    let model = info.model.as_deref().expect("model");
    assert!(model.len() <= MAX_MODEL && model.chars().all(|c| c == 'Ä'));
    assert_eq!(info.nproc, None);
    assert_eq!(info.location, None, "an impossible location is dropped");
    assert_eq!(info.contact.as_ref().map(String::len), Some(MAX_TEXT));
    let wire = freimesh_proto::control::encode(&freimesh_proto::control::AgentMsg::NodeInfo(info))
        .expect("encode");
    assert!(wire.len() <= MAX_NODE_INFO_BYTES, "{} bytes", wire.len());

    let stats = collector.statistics();
    assert_eq!(stats.validate(), Ok(()));
    assert_eq!((stats.uptime_s, stats.load_centi), (None, None));
    assert_eq!(stats.memory_total_kib, None);
}

#[test]
fn cpu_lists() {
    assert_eq!(parse_cpu_list("0\n"), Some(1));
    assert_eq!(parse_cpu_list("0-7"), Some(8));
    assert_eq!(parse_cpu_list("0,2-3"), Some(3));
    assert_eq!(parse_cpu_list("3-1"), None);
    assert_eq!(parse_cpu_list(""), None);
}

#[test]
fn the_running_system_is_readable() {
    // Whatever Linux this runs on: the kernel files are there.
    let collector = Collector::new("/", NodeInfoConfig::default());
    let stats = collector.statistics();
    assert!(
        stats.uptime_s.is_some() && stats.load_centi.is_some(),
        "{stats:?}"
    );
    assert!(
        stats.memory_total_kib.is_some() && stats.rootfs_used_ppm.is_some(),
        "{stats:?}"
    );
    assert_eq!(stats.validate(), Ok(()));
    let info = collector.node_info();
    assert!(info.nproc.is_some(), "{info:?}");
    assert_eq!(info.validate(), Ok(()));
}

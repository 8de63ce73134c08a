//! The uci2toml harness: fuzz bytes become a UCI configuration, written the
//! way `uci export` writes one (every value single-quoted, `'` as `'\''`,
//! section and option names limited to what uci itself accepts), and
//! OpenWrt's uci2toml runs on it with `busybox sh` against the test stubs of
//! `openwrt-package/tests/stub`. It must either refuse (exit 1, nothing
//! written) or write a TOML file that parses, holds only the keys uci2toml
//! writes, one `[[link]]`/`[[route]]` per UCI section, the fixed values
//! unchanged, and that the agent's configuration parser reads without
//! panicking.
//!
//! The fuzz input is a line-based text, easy for the fuzzer to mutate:
//! `config TYPE NAME`, `option KEY VALUE`, `list KEY VALUE`; in VALUE `\n`
//! stands for a newline and `\\` for a backslash, every other byte is itself.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Keys uci2toml may write, per TOML table.
const SCHEMA: [(&str, &[&str]); 6] = [
    (
        "node",
        &[
            "name",
            "private_key_file",
            "generate_key",
            "listen",
            "addresses",
            "local_prefixes",
            "backend",
            "control_socket",
            "mesh_interfaces",
            "state_file",
            // Fleet telemetry and respondd (issue 15).
            "latitude",
            "longitude",
            "share_location",
            "contact",
            "share_contact",
            "autoupdater_branch",
            "domain",
            "respondd",
        ],
    ),
    ("linux", &["tun_name", "mtu", "kernel_routes"]),
    (
        "controller",
        &["endpoint", "endpoints", "public_key", "join_token"],
    ),
    (
        "public_wifi",
        &["interface", "dhcp", "network", "dns", "lease_time"],
    ),
    (
        "link",
        &[
            "name",
            "public_key",
            "endpoint",
            "profile",
            "keepalive",
            "allowed_sources",
        ],
    ),
    ("route", &["prefix", "via"]),
];

/// Values uci2toml writes as constants: a config that changes them was
/// injected into.
const FIXED: [(&str, &str, &str); 3] = [
    ("node", "private_key_file", "/etc/freimesh/private.key"),
    ("node", "control_socket", "/var/run/freimesh/agent.sock"),
    ("node", "backend", "linux"),
];

/// One UCI section as parsed from the fuzz text.
#[derive(Debug, Default)]
struct Section {
    kind: String,
    name: String,
    /// (is_list, option, value)
    options: Vec<(bool, String, Vec<u8>)>,
}

/// uci accepts only these in section types, names and option names.
fn uci_name(raw: &[u8]) -> String {
    raw.iter()
        .filter(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .map(|b| char::from(*b))
        .collect()
}

fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match (b, bytes.as_slice().first()) {
            (b'\\', Some(b'n')) => {
                out.push(b'\n');
                bytes.next();
            }
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                bytes.next();
            }
            // A shell string cannot hold NUL, nor can uci.
            (0, _) => {}
            _ => out.push(b),
        }
    }
    out
}

fn parse(input: &[u8]) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in input.split(|b| *b == b'\n') {
        let mut words = line.splitn(3, |b| *b == b' ' || *b == b'\t');
        let word = words.next().unwrap_or_default();
        let key = words.next().unwrap_or_default();
        let value = words.next().unwrap_or_default();
        match word {
            b"config" => sections.push(Section {
                kind: uci_name(key),
                name: uci_name(value),
                options: Vec::new(),
            }),
            b"option" | b"list" => {
                if let Some(section) = sections.last_mut() {
                    let option = uci_name(key);
                    if !option.is_empty() {
                        section
                            .options
                            .push((word == b"list", option, unescape(value)));
                    }
                }
            }
            _ => {}
        }
    }
    sections.retain(|s| !s.kind.is_empty());
    sections
}

/// `uci export` syntax: single quotes, a quote as `'\''`.
fn quoted(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'\'');
    for &b in value {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
}

fn render(sections: &[Section]) -> Vec<u8> {
    let mut out = b"package freimesh\n".to_vec();
    for section in sections {
        out.extend_from_slice(b"\nconfig ");
        out.extend_from_slice(section.kind.as_bytes());
        if !section.name.is_empty() {
            out.push(b' ');
            quoted(&mut out, section.name.as_bytes());
        }
        out.push(b'\n');
        for (list, option, value) in &section.options {
            out.extend_from_slice(if *list { b"\tlist " } else { b"\toption " });
            out.extend_from_slice(option.as_bytes());
            out.push(b' ');
            quoted(&mut out, value);
            out.push(b'\n');
        }
    }
    out
}

/// A private root for the script: the stub `functions.sh`, a
/// `network.sh` that gives every network a device, and a silent `logger`.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
    script: PathBuf,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Sandbox {
    pub fn new() -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("lib/functions"))?;
        fs::create_dir_all(dir.path().join("config"))?;
        fs::create_dir_all(dir.path().join("bin"))?;
        fs::copy(
            repo().join("openwrt-package/tests/stub/lib/functions.sh"),
            root.join("lib/functions.sh"),
        )?;
        fs::write(
            root.join("lib/functions/network.sh"),
            "network_get_device() { export -- \"$1=br-$2\"; }\n",
        )?;
        let logger = dir.path().join("bin/logger");
        fs::write(&logger, "#!/bin/sh\nexit 0\n")?;
        fs::set_permissions(&logger, fs::Permissions::from_mode(0o755))?;
        Ok(Self {
            dir,
            script: repo().join("openwrt-package/freimesh/files/uci2toml"),
        })
    }

    /// Runs uci2toml on the configuration the fuzz text describes and checks
    /// the result; panics (a finding) when a rule is broken.
    pub fn check(&self, input: &[u8]) {
        let sections = parse(input);
        let uci = render(&sections);
        let config = self.dir.path().join("config/freimesh");
        let out = self.dir.path().join("out/agent.toml");
        let _ = fs::remove_dir_all(self.dir.path().join("out"));
        fs::write(&config, &uci).expect("write the UCI file");
        let output = Command::new("busybox")
            .arg("sh")
            .arg(&self.script)
            .arg(&out)
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.dir.path().join("bin").display()
                ),
            )
            .env("IPKG_INSTROOT", self.dir.path().join("root"))
            .env("UCI_CONFIG_DIR", self.dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run busybox sh uci2toml");
        let status = output.status;
        for line in output.stderr.split(|b| *b == b'\n') {
            coverage_of_message(line);
        }
        let written = fs::read(&out).ok();
        let uci_text = String::from_utf8_lossy(&uci);
        match status.code() {
            Some(1) => assert!(
                written.is_none() && !out.with_extension("toml.tmp").exists(),
                "uci2toml refused but wrote a file; UCI:\n{uci_text}"
            ),
            Some(0) => {
                let toml_bytes = written.unwrap_or_else(|| {
                    panic!("uci2toml succeeded without writing; UCI:\n{uci_text}")
                });
                check_toml(&sections, &toml_bytes, &uci_text);
            }
            other => panic!("uci2toml exited with {other:?}; UCI:\n{uci_text}"),
        }
    }
}

/// The shell script is not instrumented, so libFuzzer cannot see which of
/// its checks an input reached. Each message it prints, with the quoted
/// values taken out, is hashed onto one of [`MESSAGE_KINDS`] branches: a
/// new kind of refusal is new coverage, and the fuzzer keeps that input.
const MESSAGE_KINDS: u64 = 64;

fn coverage_of_message(line: &[u8]) {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut quoted = false;
    for &b in line {
        if b == b'\'' {
            quoted = !quoted;
        } else if !quoted {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    macro_rules! branches {
        ($kind:expr; $($n:literal)*) => {
            match $kind { $($n => std::hint::black_box($n),)* _ => 0 }
        };
    }
    std::hint::black_box(branches!(hash % MESSAGE_KINDS;
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
        32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61
        62 63));
}

fn check_toml(sections: &[Section], bytes: &[u8], uci: &str) {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|_| {
        panic!("uci2toml wrote invalid UTF-8; UCI:\n{uci}");
    });
    let table: toml::Table = text.parse().unwrap_or_else(|e| {
        panic!("uci2toml wrote TOML that does not parse ({e}); UCI:\n{uci}\nTOML:\n{text}")
    });
    let mut problems = String::new();
    for (name, value) in &table {
        let Some((_, keys)) = SCHEMA.iter().find(|(table, _)| table == name) else {
            let _ = writeln!(problems, "injected table {name:?}");
            continue;
        };
        let entries: Vec<&toml::Table> = match value {
            toml::Value::Table(t) => vec![t],
            toml::Value::Array(items) => items.iter().filter_map(|v| v.as_table()).collect(),
            _ => {
                let _ = writeln!(problems, "injected top-level key {name:?}");
                continue;
            }
        };
        for entry in entries {
            for key in entry.keys() {
                if !keys.contains(&key.as_str()) {
                    let _ = writeln!(problems, "injected key {name}.{key}");
                }
            }
        }
    }
    for (name, kind) in [("link", "link"), ("route", "route")] {
        let expected = sections.iter().filter(|s| s.kind == kind).count();
        let found = table
            .get(name)
            .and_then(|v| v.as_array())
            .map_or(0, Vec::len);
        if expected != found {
            let _ = writeln!(problems, "{found} [[{name}]] for {expected} UCI sections");
        }
    }
    for (section, key, value) in FIXED {
        let found = table
            .get(section)
            .and_then(|t| t.get(key))
            .and_then(|v| v.as_str());
        if found != Some(value) {
            let _ = writeln!(problems, "{section}.{key} is {found:?}, not {value:?}");
        }
    }
    assert!(
        problems.is_empty(),
        "uci2toml output was injected into:\n{problems}UCI:\n{uci}\nTOML:\n{text}"
    );
    // The agent reads it next: any answer but a panic is fine.
    let _ = freimesh_agent::config::AgentConfig::from_toml(text);
}

/// The fuzz text for a UCI file in `uci export` syntax (for seeds): the
/// inverse of [`parse`] for the files the package ships and tests use.
pub fn to_fuzz_text(uci: &str) -> String {
    let mut out = String::new();
    for line in uci.lines() {
        let line = line.trim_start();
        let mut words = line.splitn(3, ' ');
        let (Some(word), Some(key)) = (words.next(), words.next()) else {
            continue;
        };
        let value = words.next().unwrap_or_default().trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(value);
        match word {
            "config" | "option" | "list" => {
                let _ = writeln!(out, "{word} {key} {}", value.replace('\\', "\\\\"));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed is a configuration uci2toml accepts or refuses cleanly;
    /// the full one is accepted and passes every rule.
    #[test]
    fn seeds_pass_the_rules() {
        let sandbox = Sandbox::new().expect("sandbox");
        for seed in crate::seeds::uci2toml(&repo()).expect("seeds") {
            sandbox.check(&seed);
        }
    }

    #[test]
    #[should_panic(expected = "injected key controller.generate_key")]
    fn an_injected_key_is_a_finding() {
        let sections = parse(b"config controller controller\n");
        check_toml(
            &sections,
            b"[node]\nprivate_key_file = \"/etc/freimesh/private.key\"\n\
              control_socket = \"/var/run/freimesh/agent.sock\"\nbackend = \"linux\"\n\
              [controller]\npublic_key = \"x\"\ngenerate_key = false\n",
            "",
        );
    }

    #[test]
    fn values_are_quoted_like_uci_export() {
        let sections = parse(b"config link l1\noption name a'b\\nc\n");
        assert_eq!(
            String::from_utf8(render(&sections)).expect("utf-8"),
            "package freimesh\n\nconfig link 'l1'\n\toption name 'a'\\''b\nc'\n"
        );
    }
}

use std::time::Duration;

use super::*;

const KEY_B: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
const KEY_C: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

fn sample() -> String {
    format!(
        r#"
[node]
name = "rathaus"
private_key_file = "/etc/freimesh/private.key"
listen = "0.0.0.0:51820"
addresses = ["10.99.0.1/32", "fd99::1/128"]

[[link]]
name = "schule"
public_key = "{KEY_B}"
endpoint = "192.0.2.2:51820"
profile = "fast"

[[link]]
name = "bibliothek"
public_key = "{KEY_C}"

[[route]]
prefix = "10.99.0.0/16"
via = ["schule", "bibliothek"]

[[route]]
prefix = "fd99::4/128"
via = ["bibliothek"]
"#
    )
}

fn error_of(text: &str) -> String {
    AgentConfig::from_toml(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn parses_a_full_config_with_defaults() {
    let config = AgentConfig::from_toml(&sample()).expect("valid");
    assert_eq!(config.name, "rathaus");
    assert_eq!(config.backend, Backend::Linux);
    assert_eq!(config.links.len(), 2);
    assert_eq!(config.links[1].profile, "default");
    assert_eq!(config.links[1].endpoint, None);
    assert_eq!(
        config.routes[0].via,
        vec![
            NextHop::Link("schule".into()),
            NextHop::Link("bibliothek".into())
        ]
    );
    assert_eq!(config.linux.tun_name, "fm0");
    assert_eq!(config.linux.mtu, 1420);
    assert_eq!(
        config.linux.kernel_routes,
        vec![
            "10.99.0.0/16".parse::<IpNet>().expect("net"),
            "fd99::4/128".parse().expect("net")
        ]
    );
    assert_eq!(
        config.host_addresses()[1],
        "fd99::1/128".parse::<IpNet>().expect("net")
    );
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (sample().replace(KEY_B, "AAAA"), "link[0].public_key"),
        (
            sample().replace("192.0.2.2:51820", "192.0.2.2"),
            "link[0].endpoint",
        ),
        (sample().replace("\"fast\"", "\"warp\""), "link[0].profile"),
        (
            sample().replace("\"schule\", \"bibliothek\"", "\"schule\", \"nowhere\""),
            "route[0].via[1]",
        ),
        (
            sample().replace("\"schule\", \"bibliothek\"", "\"schule\", \"schule\""),
            "route[0].via[1]",
        ),
        (
            sample().replace("10.99.0.0/16", "10.99.0.0/33"),
            "route[0].prefix",
        ),
        (
            sample().replace("0.0.0.0:51820", "everywhere"),
            "node.listen",
        ),
        (
            sample().replace("name = \"bibliothek\"", "name = \"schule\""),
            "link[1].name",
        ),
        (sample().replace(KEY_C, KEY_B), "link[1].public_key"),
        (
            sample().replace("\"fd99::1/128\"", "\"10.99.0.1/32\""),
            "node.addresses[1]",
        ),
        (
            sample().replace("[node]", "[node]\nbackend = \"kernel\""),
            "node.backend",
        ),
        (sample() + "\n[linux]\nmtu = 500\n", "linux.mtu"),
        (
            sample() + "\n[linux]\ntun_name = \"a-very-long-interface\"\n",
            "linux.tun_name",
        ),
        (
            sample() + "\n[[route]]\nprefix = \"10.99.0.1/32\"\nvia = [\"schule\"]\n",
            "route[2].prefix",
        ),
        (
            sample().replace("\"schule\", \"bibliothek\"", "\"schule\", \"local\""),
            "route[0].via[1]",
        ),
        (
            sample() + "\n[[userspace.tcp_expose]]\nport = 0\ntarget = \"127.0.0.1:1\"\n",
            "userspace.tcp_expose[0].port",
        ),
    ];
    for (text, field) in cases {
        let err = error_of(&text);
        assert!(
            err.starts_with(field),
            "expected an error about {field}, got: {err}"
        );
    }
}

#[test]
fn syntax_and_unknown_keys_are_reported() {
    assert!(error_of("[node").contains("<config>"));
    let err = error_of(&sample().replace("profile = \"fast\"", "profil = \"fast\""));
    assert!(err.contains("profil"), "{err}");
    let err = error_of("[node]\nlisten = \"0.0.0.0:1\"\naddresses = []\n");
    assert!(err.contains("private_key_file"), "{err}");
}

#[test]
fn a_node_needs_an_address() {
    let err = error_of(&sample().replace(
        "addresses = [\"10.99.0.1/32\", \"fd99::1/128\"]",
        "addresses = []",
    ));
    assert!(err.starts_with("node.addresses"), "{err}");
}

const CONTROLLED: &str = r#"
[node]
private_key_file = "/etc/freimesh/private.key"
listen = "0.0.0.0:51820"

[controller]
endpoint = "192.0.2.10:7700"
public_key = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
join_token = "fmj1-00112233"
"#;

#[test]
fn controller_section_makes_addresses_links_and_routes_optional() {
    let cfg = AgentConfig::from_toml(CONTROLLED).expect("valid");
    let ctl = cfg.controller.expect("controller");
    assert_eq!(
        ctl.endpoints,
        vec!["192.0.2.10:7700".parse().expect("addr")]
    );
    assert_eq!(ctl.join_token.as_deref(), Some("fmj1-00112233"));
    assert!(cfg.addresses.is_empty() && cfg.links.is_empty() && cfg.routes.is_empty());
    let without = CONTROLLED.replace("join_token = \"fmj1-00112233\"\n", "");
    assert_eq!(
        AgentConfig::from_toml(&without)
            .expect("valid")
            .controller
            .expect("controller")
            .join_token,
        None
    );
}

#[test]
fn controller_errors_name_the_field() {
    let bad_endpoint = CONTROLLED.replace("192.0.2.10:7700", "controller.example");
    assert!(error_of(&bad_endpoint).starts_with("controller.endpoint:"));
    let bad_key = CONTROLLED.replace("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=", "AAAA");
    assert!(error_of(&bad_key).starts_with("controller.public_key:"));
    let empty_token = CONTROLLED.replace("fmj1-00112233", " ");
    assert!(error_of(&empty_token).starts_with("controller.join_token:"));
    let unknown = format!("{CONTROLLED}extra = 1\n");
    assert!(error_of(&unknown).contains("extra"));
    let no_addresses = CONTROLLED
        .split("[controller]")
        .next()
        .expect("node part")
        .to_owned();
    assert!(error_of(&no_addresses).starts_with("node.addresses:"));
}

#[test]
fn a_name_the_controller_would_refuse_is_refused_by_check() {
    let named =
        |name: &str| CONTROLLED.replace("[node]\n", &format!("[node]\nname = \"{name}\"\n"));
    assert_eq!(
        AgentConfig::from_toml(&named("rathaus-2.ost"))
            .expect("valid")
            .name,
        "rathaus-2.ost"
    );
    // TOML's own escape: an ESC character in the name, as a terminal
    // attack would put it.
    for bad in ["rat haus", "rat_haus", "rathaus\\u001b[2J", &"x".repeat(64)] {
        let err = error_of(&named(bad));
        assert!(err.starts_with("node.name:"), "{bad:?}: {err}");
    }
    // Without a controller the name never leaves the node: any name works.
    assert!(
        AgentConfig::from_toml(&sample().replace("name = \"rathaus\"", "name = \"rat haus\""))
            .is_ok()
    );
}

const CONTROLLER: &str = r#"
[controller]
endpoint = "192.0.2.10:7700"
public_key = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
"#;

fn node_with(extra: &str) -> String {
    format!(
        r#"
[node]
private_key_file = "/k"
listen = "0.0.0.0:51820"
addresses = ["10.99.0.1/32"]
{extra}
"#
    )
}

#[test]
fn gateway_and_public_wifi_sections_parse_with_defaults() {
    let text = node_with(&format!(
        r#"{CONTROLLER}
[gateway]
uplink = "wan"
check = ["192.0.2.53", "2001:db8::53"]

[public_wifi]
interface = "br-client"
"#
    ));
    let config = AgentConfig::from_toml(&text).expect("valid");
    let gw = config.gateway.expect("gateway");
    assert_eq!(gw.uplink, "wan");
    assert_eq!(gw.check.len(), 2);
    assert_eq!(gw.check_interval, Duration::from_millis(50));
    assert_eq!(gw.check_misses, 3);
    assert!(gw.nat);
    let wifi = config.public_wifi.expect("public wifi");
    assert_eq!(wifi.interface, "br-client");
    assert_eq!(wifi.dnsmasq, PathBuf::from("dnsmasq"));
    assert!(
        wifi.dns.is_empty(),
        "default: the node's own client address"
    );
    assert_eq!(wifi.lease_time, Duration::from_secs(3600));
    assert_eq!(wifi.dhcp, crate::publicwifi::DhcpMode::Dnsmasq);
    assert_eq!(wifi.uci, PathBuf::from("uci"));
    assert_eq!(wifi.network, "br-client", "default: the interface name");
}

#[test]
fn public_wifi_dhcp_openwrt_takes_uci_and_network() {
    let text = node_with(&format!(
        r#"{CONTROLLER}
[public_wifi]
interface = "br-client"
dhcp = "openwrt"
uci = "/sbin/uci"
network = "client"
"#
    ));
    let wifi = AgentConfig::from_toml(&text)
        .expect("valid")
        .public_wifi
        .expect("public wifi");
    assert_eq!(wifi.dhcp, crate::publicwifi::DhcpMode::OpenWrt);
    assert_eq!(wifi.uci, PathBuf::from("/sbin/uci"));
    assert_eq!(wifi.network, "client");
    let explicit = node_with(&format!(
        "{CONTROLLER}\n[public_wifi]\ninterface = \"wlan0\"\ndhcp = \"dnsmasq\""
    ));
    let wifi = AgentConfig::from_toml(&explicit)
        .expect("valid")
        .public_wifi
        .expect("public wifi");
    assert_eq!(wifi.dhcp, crate::publicwifi::DhcpMode::Dnsmasq);
}

#[test]
fn gateway_and_public_wifi_take_explicit_values() {
    let text = node_with(&format!(
        r#"{CONTROLLER}
[gateway]
uplink = "eth1"
check = ["198.51.100.1"]
check_interval_ms = 20
check_misses = 5
nat = false

[public_wifi]
interface = "wlan0"
dnsmasq = "/usr/sbin/dnsmasq"
dns = ["9.9.9.9", "2620:fe::fe"]
lease_time = "30m"
"#
    ));
    let config = AgentConfig::from_toml(&text).expect("valid");
    let gw = config.gateway.expect("gateway");
    assert_eq!(gw.check_interval, Duration::from_millis(20));
    assert_eq!((gw.check_misses, gw.nat), (5, false));
    let wifi = config.public_wifi.expect("public wifi");
    assert_eq!(wifi.dns.len(), 2);
    assert_eq!(wifi.lease_time, Duration::from_secs(1800));
    assert_eq!(wifi.dnsmasq, PathBuf::from("/usr/sbin/dnsmasq"));
}

#[test]
fn bad_gateway_and_public_wifi_values_name_the_field() {
    let gw = |body: &str| error_of(&node_with(&format!("[gateway]\n{body}")));
    assert!(gw("uplink = \"wan\"\ncheck = []").contains("gateway.check:"));
    assert!(gw("uplink = \"wan\"\ncheck = [\"nope\"]").contains("gateway.check[0]"));
    assert!(gw("uplink = \"wan\"\ncheck = [\"127.0.0.1\"]").contains("gateway.check[0]"));
    assert!(
        gw("uplink = \"wan\"\ncheck = [\"192.0.2.1\", \"192.0.2.1\"]").contains("listed twice")
    );
    assert!(
        gw("uplink = \"wan\"\ncheck = [\"192.0.2.1\"]\ncheck_interval_ms = 0")
            .contains("gateway.check_interval_ms")
    );
    assert!(
        gw("uplink = \"wan\"\ncheck = [\"192.0.2.1\"]\ncheck_misses = -1")
            .contains("gateway.check_misses")
    );
    assert!(gw("uplink = \"a/b\"\ncheck = [\"192.0.2.1\"]").contains("gateway.uplink"));
    assert!(gw("uplink = \"fm0\"\ncheck = [\"192.0.2.1\"]").contains("mesh TUN"));
    assert!(gw("check = [\"192.0.2.1\"]").contains("uplink"));

    let wifi = |body: &str| error_of(&node_with(&format!("{CONTROLLER}\n[public_wifi]\n{body}")));
    assert!(wifi("interface = \"wlan0\"\nlease_time = \"1x\"").contains("public_wifi.lease_time"));
    assert!(wifi("interface = \"wlan0\"\nlease_time = \"60\"").contains("2 minutes"));
    assert!(wifi("interface = \"wlan0\"\ndns = [\"dns.example\"]").contains("public_wifi.dns[0]"));
    assert!(wifi("interface = \"\"").contains("public_wifi.interface"));
    assert!(wifi("interface = \"wlan0\"\ndnsmasq = \" \"").contains("public_wifi.dnsmasq"));
    for bad in ["OpenWrt", "odhcpd", ""] {
        let err = wifi(&format!("interface = \"wlan0\"\ndhcp = \"{bad}\""));
        assert!(err.contains("public_wifi.dhcp"), "{err}");
        assert!(err.contains("\"openwrt\""), "{err}");
    }
    assert!(wifi("interface = \"wlan0\"\ndhcp = 1").contains("dhcp"));
    assert!(wifi("interface = \"wlan0\"\nuci = \"\"").contains("public_wifi.uci"));
    assert!(wifi("interface = \"wlan0\"\nnetwork = \"a b\"").contains("public_wifi.network"));
}

#[test]
fn public_wifi_needs_a_controller_and_both_need_linux() {
    let no_controller = error_of(&node_with("[public_wifi]\ninterface = \"wlan0\""));
    assert!(no_controller.starts_with("public_wifi:"), "{no_controller}");
    let userspace = error_of(
        r#"
[node]
private_key_file = "/k"
listen = "0.0.0.0:51820"
addresses = ["10.99.0.1/32"]
backend = "userspace"

[gateway]
uplink = "wan"
check = ["192.0.2.1"]
"#,
    );
    assert!(
        userspace.starts_with("gateway:") && userspace.contains("linux"),
        "{userspace}"
    );
    let same = error_of(&node_with(&format!(
        "{CONTROLLER}\n[gateway]\nuplink = \"wan\"\ncheck = [\"192.0.2.1\"]\n[public_wifi]\ninterface = \"wan\""
    )));
    assert!(same.contains("gateway.uplink"), "{same}");
}

#[test]
fn routes_carry_a_segment_and_gateways_may_list_alternates_after_local() {
    let text = format!(
        r#"{}
[[route]]
prefix = "10.20.0.0/24"
via = ["schule"]
segment = "intranet"

[[route]]
prefix = "0.0.0.0/0"
via = ["local", "bibliothek"]
segment = "internet"
"#,
        sample()
    );
    let config = AgentConfig::from_toml(&text).expect("valid");
    assert_eq!(config.routes[0].segment, Segment::Infrastructure, "default");
    assert_eq!(config.routes[2].segment, Segment::Intranet);
    assert_eq!(
        config.routes[3].via,
        vec![NextHop::Local, NextHop::Link("bibliothek".into())]
    );
    assert!(
        !config
            .linux
            .kernel_routes
            .contains(&"0.0.0.0/0".parse().expect("net")),
        "a gateway's own default route does not go into the TUN"
    );
    let bad = error_of(&format!(
        "{}\n[[route]]\nprefix = \"10.20.0.0/24\"\nvia = [\"schule\"]\nsegment = \"dmz\"\n",
        sample()
    ));
    assert!(
        bad.contains("route[2].segment") && bad.contains("unknown segment"),
        "{bad}"
    );
    let local_not_first = error_of(&format!(
        "{}\n[[route]]\nprefix = \"10.20.0.0/24\"\nvia = [\"local\", \"schule\"]\n",
        sample()
    ));
    assert!(
        local_not_first.contains("route[2].via[0]"),
        "{local_not_first}"
    );
}

#[test]
fn interface_names_that_could_inject_are_refused_with_the_field() {
    // Each reaches a line of dnsmasq's config, an nftables string or a UCI
    // command: a newline or quote there would add configuration.
    let bad = [
        ("wlan0\ninterface=eth0", "control character"),
        ("wlan0\rx", "control character"),
        ("wl\u{1b}[31m", "control character"),
        ("wlan 0", "whitespace"),
        ("wlan0\t", "control character"),
        ("wlan0\"", "quote"),
        ("wl'an", "quote"),
        ("wlan0,eth0", "','"),
        ("wlan*", "'*'"),
        ("wlän0", "'ä'"),
        ("abcdefghijklmnop", "16 bytes"),
        ("..", "not a name"),
        ("", "empty"),
    ];
    for (name, why) in bad {
        let value = toml::Value::String(name.to_owned()).to_string();
        for (field, text) in [
            (
                "linux.tun_name",
                format!("{}\n[linux]\ntun_name = {value}\n", sample()),
            ),
            (
                "gateway.uplink",
                node_with(&format!(
                    "[gateway]\nuplink = {value}\ncheck = [\"192.0.2.1\"]"
                )),
            ),
            (
                "public_wifi.interface",
                node_with(&format!("{CONTROLLER}\n[public_wifi]\ninterface = {value}")),
            ),
        ] {
            let err = error_of(&text);
            assert!(err.starts_with(&format!("{field}: ")), "{name:?}: {err}");
            assert!(err.contains(why), "{name:?}: {err}");
            assert!(!err.contains('\n'), "the error itself is one line: {err:?}");
        }
    }
    // Real names from Linux and OpenWrt pass.
    for good in [
        "wlan0",
        "br-client",
        "phy0-ap0",
        "eth0.2",
        "wg_mesh",
        "abcdefghijklmno",
    ] {
        let text = node_with(&format!(
            "{CONTROLLER}\n[public_wifi]\ninterface = \"{good}\""
        ));
        assert!(AgentConfig::from_toml(&text).is_ok(), "{good}");
    }
}

/// Item 5 of issue 13: a router's whole configuration.
const MINIMAL: &str = r#"
[node]
private_key_file = "/etc/freimesh/private.key"
generate_key = true

[controller]
endpoints = ["192.0.2.10:7700", "[2001:db8::10]:7700"]
public_key = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
join_token = "fmj1-00112233"
"#;

#[test]
fn a_minimal_config_gets_sensible_defaults() {
    let cfg = AgentConfig::from_toml(MINIMAL).expect("valid");
    assert_eq!(cfg.listen, DEFAULT_LISTEN.parse().expect("addr"));
    assert_eq!(cfg.backend, Backend::Linux);
    assert!(cfg.addresses.is_empty());
    let ctl = cfg.controller.expect("controller");
    assert_eq!(
        ctl.endpoints,
        vec![
            "192.0.2.10:7700".parse::<SocketAddr>().expect("addr"),
            "[2001:db8::10]:7700".parse().expect("addr"),
        ]
    );
    assert_eq!(cfg.state_file, StateFileConfig::default());
    assert_eq!(
        cfg.state_file.path,
        PathBuf::from(crate::statefile::DEFAULT_STATE_FILE)
    );
    assert_eq!(cfg.state_file.write_interval, Duration::from_secs(60));
}

#[test]
fn state_file_settings_are_read_and_checked() {
    let with = MINIMAL.replace(
        "generate_key = true\n",
        "generate_key = true\nstate_file = \"/tmp/fm/state\"\nstate_write_interval_s = 300\n",
    );
    let cfg = AgentConfig::from_toml(&with).expect("valid");
    assert_eq!(cfg.state_file.path, PathBuf::from("/tmp/fm/state"));
    assert_eq!(cfg.state_file.write_interval, Duration::from_secs(300));
    for bad in ["1", "0", "-5", "100000"] {
        let text = MINIMAL.replace(
            "generate_key = true\n",
            &format!("generate_key = true\nstate_write_interval_s = {bad}\n"),
        );
        assert!(
            error_of(&text).starts_with("node.state_write_interval_s:"),
            "{bad}"
        );
    }
    let empty = MINIMAL.replace("generate_key = true\n", "state_file = \" \"\n");
    assert!(error_of(&empty).starts_with("node.state_file:"));
}

#[test]
fn controller_endpoints_are_one_list_and_checked() {
    let both = MINIMAL.replace(
        "endpoints = [",
        "endpoint = \"192.0.2.9:7700\"\nendpoints = [",
    );
    assert!(error_of(&both).contains("either endpoint or endpoints"));
    let twice = MINIMAL.replace("[2001:db8::10]:7700", "192.0.2.10:7700");
    assert!(error_of(&twice).starts_with("controller.endpoints[1]:"));
    let none = MINIMAL.replace(
        "endpoints = [\"192.0.2.10:7700\", \"[2001:db8::10]:7700\"]",
        "endpoints = []",
    );
    assert!(error_of(&none).starts_with("controller.endpoints:"));
    let host = MINIMAL.replace("192.0.2.10:7700", "controller.example:7700");
    assert!(
        error_of(&host).starts_with("controller.endpoints[0]:"),
        "host names are not resolved: {}",
        error_of(&host)
    );
    let many: Vec<String> = (0..=MAX_CONTROLLER_ENDPOINTS)
        .map(|i| format!("\"192.0.2.{}:7700\"", i + 1))
        .collect();
    let too_many = MINIMAL.replace(
        "[\"192.0.2.10:7700\", \"[2001:db8::10]:7700\"]",
        &format!("[{}]", many.join(", ")),
    );
    assert!(error_of(&too_many).contains("more than the"));
}

fn discovery_node(listen: &str, extra: &str) -> String {
    format!(
        r#"
[node]
private_key_file = "/k"
listen = "{listen}"
addresses = ["10.99.0.1/32"]
{extra}
"#
    )
}

#[test]
fn mesh_interfaces_are_checked_and_need_an_ipv6_listen_address() {
    let config = AgentConfig::from_toml(&discovery_node(
        "[::]:51820",
        r#"mesh_interfaces = ["mesh0", "br-lan"]"#,
    ))
    .expect("valid");
    assert_eq!(config.mesh_interfaces, ["mesh0", "br-lan"]);
    assert_eq!(
        config.max_discovered_links_per_interface,
        crate::discovery::DEFAULT_MAX_DISCOVERED_LINKS
    );
    let config = AgentConfig::from_toml(&sample()).expect("valid");
    assert!(config.mesh_interfaces.is_empty(), "off unless configured");
    for (listen, extra, field, why) in [
        (
            "0.0.0.0:51820",
            r#"mesh_interfaces = ["mesh0"]"#,
            "node.listen",
            "[::]:51820",
        ),
        (
            "[::]:51820",
            r#"mesh_interfaces = ["mesh0", "mesh0"]"#,
            "node.mesh_interfaces[1]",
            "twice",
        ),
        (
            "[::]:51820",
            r#"mesh_interfaces = ["fm0"]"#,
            "node.mesh_interfaces[0]",
            "TUN",
        ),
        (
            "[::]:51820",
            r#"mesh_interfaces = ["a b"]"#,
            "node.mesh_interfaces[0]",
            "whitespace",
        ),
        (
            "[::]:51820",
            "max_discovered_links_per_interface = 0",
            "node.max_discovered_links_per_interface",
            "1..=64",
        ),
    ] {
        let err = error_of(&discovery_node(listen, extra));
        assert!(err.starts_with(&format!("{field}: ")), "{err}");
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn a_minimal_config_with_mesh_interfaces_listens_on_ipv6_too() {
    let with = MINIMAL.replace(
        "generate_key = true\n",
        "generate_key = true\nmesh_interfaces = [\"mesh0\"]\n",
    );
    let cfg = AgentConfig::from_toml(&with).expect("valid");
    assert_eq!(cfg.listen, DEFAULT_LISTEN_MESH.parse().expect("addr"));
    assert_eq!(cfg.mesh_interfaces, vec!["mesh0".to_string()]);
}

#[test]
fn node_info_keys_are_optional_bounded_and_checked() {
    let plain = AgentConfig::from_toml(&sample()).expect("config");
    assert_eq!(plain.node_info, crate::nodeinfo::NodeInfoConfig::default());

    let with = sample().replace(
        "listen = \"0.0.0.0:51820\"",
        "listen = \"0.0.0.0:51820\"\nlatitude = 52.520008\nlongitude = 13\nshare_location = true\ncontact = \"  owner@example.org \"\nautoupdater_branch = \"stable\"\ndomain = \"city\"",
    );
    let cfg = AgentConfig::from_toml(&with).expect("config");
    let info = &cfg.node_info;
    assert_eq!(
        info.location,
        freimesh_proto::telemetry::Location::from_degrees(52.520_008, 13.0)
    );
    assert!(info.share_location && !info.share_contact);
    assert_eq!(info.contact.as_deref(), Some("owner@example.org"));
    assert_eq!(info.autoupdater_branch.as_deref(), Some("stable"));
    assert_eq!(info.domain.as_deref(), Some("city"));

    let one = sample().replace(
        "listen = \"0.0.0.0:51820\"",
        "listen = \"0.0.0.0:51820\"\nlatitude = 52.5",
    );
    assert!(
        error_of(&one).contains("node.latitude"),
        "{}",
        error_of(&one)
    );
    let far = sample().replace(
        "listen = \"0.0.0.0:51820\"",
        "listen = \"0.0.0.0:51820\"\nlatitude = 95.0\nlongitude = 13.4",
    );
    assert!(error_of(&far).contains("±90"), "{}", error_of(&far));
    let long = sample().replace(
        "listen = \"0.0.0.0:51820\"",
        &format!(
            "listen = \"0.0.0.0:51820\"\ncontact = \"{}\"",
            "x".repeat(200)
        ),
    );
    assert!(
        error_of(&long).contains("node.contact"),
        "{}",
        error_of(&long)
    );
}

#[test]
fn respondd_is_off_by_default_and_needs_mesh_interfaces_but_never_the_public_one() {
    assert!(!AgentConfig::from_toml(&sample()).expect("valid").respondd);
    let on = discovery_node(
        "[::]:51820",
        "mesh_interfaces = [\"mesh0\"]\nrespondd = true",
    );
    assert!(AgentConfig::from_toml(&on).expect("valid").respondd);
    let err = error_of(&discovery_node("[::]:51820", "respondd = true"));
    assert!(err.starts_with("node.respondd: "), "{err}");
    let public = format!(
        "{}{CONTROLLER}\n[public_wifi]\ninterface = \"br-client\"\n",
        discovery_node(
            "[::]:51820",
            "mesh_interfaces = [\"mesh0\", \"br-client\"]\nrespondd = true"
        )
    );
    let err = error_of(&public);
    assert!(err.starts_with("node.mesh_interfaces[1]: "), "{err}");
    assert!(err.contains("public Wi-Fi"), "{err}");
}

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
    assert_eq!(ctl.endpoint, "192.0.2.10:7700".parse().expect("addr"));
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

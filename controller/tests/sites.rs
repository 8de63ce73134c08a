//! `site add` / `site export` through the admin functions the CLI calls:
//! the exported wg-quick text (golden), the placeholder for an operator's
//! own key, and clear errors for an unknown site or a missing endpoint.

use freimesh_controller::admin;
use freimesh_controller::store::{Enrollment, Store};
use freimesh_proto::PublicKeyBytes;
use ipnet::IpNet;

fn net(text: &str) -> IpNet {
    text.parse().expect("net")
}

#[test]
fn export_prints_a_wg_quick_config_for_the_site() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("mesh.db");
    admin::init(
        &db,
        "fd12:3456:789a::/48".parse().expect("ula"),
        "10.99.0.0/16".parse().expect("v4"),
        false,
    )
    .expect("init");
    let token = admin::token_create(
        &db,
        std::time::Duration::from_secs(60),
        &[net("10.20.0.0/24")],
    )
    .expect("token");
    let via = {
        let mut store = Store::open(&db).expect("open");
        store
            .enroll(
                &Enrollment {
                    key: PublicKeyBytes([7; 32]),
                    hostname: "rathaus",
                    endpoints: &["192.0.2.7:51820".parse().expect("ep")],
                    token: &token,
                    want_addresses: &[],
                    prefixes: &[],
                    roles: Default::default(),
                },
                admin::unix_now(),
            )
            .expect("enrol")
    };
    let site_key = PublicKeyBytes([42; 32]);
    let site = admin::site_add(
        &db,
        "library",
        via.id,
        &[net("10.30.0.0/24")],
        Some(site_key),
    )
    .expect("site");
    assert_eq!(site.address, net("10.99.0.2/32"));
    admin::site_add(&db, "school", via.id, &[net("10.31.0.0/24")], None).expect("school");
    let text = admin::site_export(&db, "library", None).expect("export");
    let golden = format!(
        "# freimesh site \"library\" via rathaus (freimesh-controller site export)\n\
         [Interface]\n\
         PrivateKey = <the site's own key>\n\
         Address = 10.99.0.2/32\n\
         \n\
         [Peer]\n\
         PublicKey = {}\n\
         Endpoint = 192.0.2.7:51820\n\
         AllowedIPs = 10.99.0.0/16, 10.20.0.0/24, 10.31.0.0/24\n\
         PersistentKeepalive = 25\n",
        PublicKeyBytes([7; 32]).to_base64()
    );
    assert_eq!(text, golden);
    // A generated key is printed; --endpoint overrides the node's.
    let school = admin::site_export(&db, "school", Some("rathaus.example:51820")).expect("export");
    let private = school
        .lines()
        .find_map(|l| l.strip_prefix("PrivateKey = "))
        .expect("key line");
    assert!(freimesh_proto::decode_key(private).is_ok(), "{private}");
    assert!(school.contains("Endpoint = rathaus.example:51820\n"));
    assert!(school.contains("AllowedIPs = 10.99.0.0/16, 10.20.0.0/24, 10.30.0.0/24\n"));
    let listed = admin::site_list(&db).expect("list");
    assert_eq!(listed.len(), 2);

    let before = Store::open(&db).expect("open").dump().expect("dump");
    let err = admin::site_export(&db, "nope", None).expect_err("unknown");
    assert!(err.to_string().contains("no site named \"nope\""), "{err}");
    let err = admin::site_remove(&db, "nope").expect_err("unknown");
    assert!(err.to_string().contains("no site named \"nope\""), "{err}");
    let err =
        admin::site_add(&db, "gym", via.id, &[net("10.30.0.0/25")], None).expect_err("overlap");
    assert!(
        err.to_string()
            .contains("already claimed by site \"library\""),
        "{err}"
    );
    assert_eq!(
        Store::open(&db).expect("open").dump().expect("dump"),
        before
    );

    admin::site_remove(&db, "library").expect("remove");
    assert_eq!(admin::site_list(&db).expect("list").len(), 1);
}

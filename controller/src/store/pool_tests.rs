//! Client pools, roles, prefix claims and sites in the registry: every
//! refusal names what is wrong and leaves the database as it was.

use std::collections::BTreeSet;
use std::path::PathBuf;

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::Roles;
use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_800_000_000;
const PUBLIC: Roles = Roles {
    gateway: false,
    public_wifi: true,
};

fn settings(clients: bool) -> MeshSettings {
    MeshSettings {
        ula: "fd12:3456:789a::/48".parse().expect("ula"),
        ipv4: "10.99.0.0/16".parse().expect("v4"),
        approval: false,
        controller_public_key: PublicKeyBytes([9; 32]),
        clients_ipv4: clients.then(|| "10.100.0.0/16".parse().expect("clients")),
        client_subnet_len: 24,
    }
}

fn fresh(clients: bool) -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mesh.db");
    let mut store = Store::open(&path).expect("open");
    store.init(&settings(clients)).expect("init");
    (dir, path, store)
}

/// Enrols a node requesting `roles` with a token that approves them.
fn enrol(store: &mut Store, key: u8, roles: Roles, prefixes: &[IpNet]) -> Result<NodeRecord> {
    let token = store.create_token_with_roles(NOW + 3600, prefixes, roles, NOW)?;
    store.enroll(
        &Enrollment {
            key: PublicKeyBytes([key; 32]),
            hostname: "node",
            endpoints: &[],
            token: &token,
            want_addresses: &[],
            prefixes,
            roles,
        },
        NOW,
    )
}

fn net(text: &str) -> IpNet {
    text.parse().expect("net")
}

/// `f` must fail with a message containing `says` and change nothing.
fn refused<T: std::fmt::Debug>(
    store: &mut Store,
    says: &str,
    f: impl FnOnce(&mut Store) -> Result<T>,
) {
    let before = store.dump().expect("dump");
    match f(store) {
        Ok(v) => panic!("expected a refusal containing {says:?}, got {v:?}"),
        Err(e) => assert!(e.to_string().contains(says), "{e} should contain {says:?}"),
    }
    assert_eq!(
        store.dump().expect("dump"),
        before,
        "{says}: database changed"
    );
}

#[test]
fn public_nodes_get_one_subnet_pair_each_that_survives_a_reopen() {
    let (_dir, path, mut store) = fresh(true);
    let a = enrol(&mut store, 1, PUBLIC, &[]).expect("a");
    let b = enrol(&mut store, 2, Roles::default(), &[]).expect("b");
    assert_eq!(
        a.client_prefixes,
        vec![net("fd12:3456:789a:1::/64"), net("10.100.0.0/24")]
    );
    assert!(b.client_prefixes.is_empty());
    // B starts serving clients later (approved): the next pair.
    store
        .set_role_approval(b.id, freimesh_proto::api::Role::PublicWifi, true)
        .expect("approve");
    let b = store.set_roles(b.id, PUBLIC).expect("roles");
    assert_eq!(
        b.client_prefixes,
        vec![net("fd12:3456:789a:2::/64"), net("10.100.1.0/24")]
    );
    // A stops and starts again: the same pair, never reassigned.
    store.set_roles(a.id, Roles::default()).expect("off");
    let again = store.set_roles(a.id, PUBLIC).expect("on");
    assert_eq!(again.client_prefixes, a.client_prefixes);
    drop(store);
    let store = Store::open(&path).expect("reopen");
    assert_eq!(
        store.node(a.id).expect("a").client_prefixes,
        a.client_prefixes
    );
    assert!(store.node(a.id).expect("a").public_wifi);
}

#[test]
fn without_a_client_pool_a_public_node_is_refused_until_pool_clients() {
    let (_dir, _path, mut store) = fresh(false);
    let token = store
        .create_token_with_roles(NOW + 3600, &[], PUBLIC, NOW)
        .expect("token");
    refused(&mut store, "pool clients --ipv4", |s| {
        s.enroll(
            &Enrollment {
                key: PublicKeyBytes([1; 32]),
                hostname: "kiosk",
                endpoints: &[],
                token: &token,
                want_addresses: &[],
                prefixes: &[],
                roles: PUBLIC,
            },
            NOW,
        )
    });
    refused(&mut store, "overlaps the overlay pool", |s| {
        s.set_client_pool(net("10.99.128.0/17").to_string().parse().expect("v4"), 24)
    });
    store
        .set_client_pool("10.100.0.0/16".parse().expect("v4"), 24)
        .expect("pool");
    let a = enrol(&mut store, 1, PUBLIC, &[]).expect("enrol");
    assert_eq!(a.client_prefixes.len(), 2);
    refused(&mut store, "cannot change", |s| {
        s.set_client_pool("10.101.0.0/16".parse().expect("v4"), 24)
    });
    assert!(
        settings(true)
            .mesh_prefixes()
            .contains(&net("10.100.0.0/16"))
    );
}

#[test]
fn bad_prefixes_are_refused_with_the_reason_and_nothing_changes() {
    let (_dir, _path, mut store) = fresh(true);
    let a = enrol(&mut store, 1, Roles::default(), &[net("10.20.0.0/24")]).expect("a");
    let b = enrol(&mut store, 2, Roles::default(), &[]).expect("b");
    refused(&mut store, "overlay pool", |s| {
        s.approve_prefix(b.id, net("10.99.5.0/24"))
    });
    refused(&mut store, "overlay pool", |s| {
        s.approve_prefix(b.id, net("fd12:3456:789a:7::/64"))
    });
    refused(&mut store, "public client pool", |s| {
        s.approve_prefix(b.id, net("10.100.3.0/24"))
    });
    refused(&mut store, "overlay pool", |s| {
        s.approve_prefix(b.id, net("10.0.0.0/8"))
    });
    refused(&mut store, "already claimed by node 1", |s| {
        s.approve_prefix(b.id, net("10.20.0.128/25"))
    });
    refused(&mut store, "already claimed by node 1", |s| {
        s.create_token(NOW + 60, &[net("10.20.0.0/24")], NOW)
    });
    store
        .create_token(NOW + 60, &[net("10.40.0.0/24")], NOW)
        .expect("token");
    refused(&mut store, "an unused join token", |s| {
        s.create_token(NOW + 60, &[net("10.40.0.0/24")], NOW)
    });
    refused(&mut store, "this same request", |s| {
        s.create_token(NOW + 60, &[net("10.50.0.0/24"), net("10.50.0.0/25")], NOW)
    });
    let key = SiteKey {
        public: PublicKeyBytes([50; 32]),
        private: None,
    };
    refused(&mut store, "already claimed by node 1", |s| {
        s.add_site("hall", b.id, &[net("10.20.0.0/16")], &key, NOW)
    });
    store
        .add_site("hall", b.id, &[net("10.30.0.0/24")], &key, NOW)
        .expect("site");
    refused(&mut store, "already claimed by site \"hall\"", |s| {
        s.approve_prefix(a.id, net("10.30.0.0/24"))
    });
    // Its own prefix again is no conflict.
    store
        .approve_prefix(a.id, net("10.20.0.0/24"))
        .expect("same");
}

#[test]
fn sites_get_overlay_addresses_beside_the_nodes_and_unknown_sites_are_named() {
    let (_dir, _path, mut store) = fresh(true);
    let a = enrol(&mut store, 1, Roles::default(), &[]).expect("a");
    let key = SiteKey {
        public: PublicKeyBytes([50; 32]),
        private: Some("cHJpdmF0ZQ==".into()),
    };
    let site = store
        .add_site("hall", a.id, &[net("10.30.0.0/24")], &key, NOW)
        .expect("site");
    assert_eq!(site.address, net("10.99.0.2/32"));
    refused(&mut store, "exists already", |s| {
        s.add_site("hall", a.id, &[net("10.31.0.0/24")], &key, NOW)
    });
    refused(&mut store, "is already registered", |s| {
        s.add_site(
            "school",
            a.id,
            &[net("10.31.0.0/24")],
            &SiteKey {
                public: PublicKeyBytes([1; 32]),
                private: None,
            },
            NOW,
        )
    });
    refused(&mut store, "no node with id 9", |s| {
        s.add_site("school", 9, &[net("10.31.0.0/24")], &key, NOW)
    });
    let b = enrol(&mut store, 2, Roles::default(), &[]).expect("b");
    assert_eq!(b.addresses[1], net("10.99.0.3/32"));
    refused(&mut store, "no site named \"nope\"", |s| {
        s.remove_site("nope")
    });
    store.remove_site("hall").expect("remove");
    assert!(store.sites().expect("sites").is_empty());
    // The removed site's address is not handed out again.
    let c = enrol(&mut store, 3, Roles::default(), &[]).expect("c");
    assert_eq!(c.addresses[1], net("10.99.0.4/32"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn client_subnets_are_never_double_assigned(roles in proptest::collection::vec(any::<(bool, bool)>(), 1..24)) {
        let (_dir, _path, mut store) = fresh(true);
        let mut ids = Vec::new();
        for (i, (public, later)) in roles.iter().enumerate() {
            let key = u8::try_from(i + 1).expect("small");
            let r = Roles { gateway: false, public_wifi: *public };
            let rec = enrol(&mut store, key, r, &[]).expect("enrol");
            ids.push(rec.id);
            if *later {
                store.set_roles(rec.id, PUBLIC).expect("roles");
            }
        }
        let hosts_v6 = ipnet::Ipv6Net::new(settings(true).ula.network(), 64).expect("first");
        let mut seen = BTreeSet::new();
        for rec in store.nodes().expect("nodes") {
            prop_assert_eq!(rec.public_wifi, !rec.client_prefixes.is_empty());
            for p in &rec.client_prefixes {
                prop_assert!(seen.insert(*p), "{} assigned twice", p);
                match p {
                    IpNet::V6(p) => {
                        prop_assert!(settings(true).ula.contains(p));
                        prop_assert!(!hosts_v6.contains(p));
                        prop_assert_eq!(p.prefix_len(), 64);
                    }
                    IpNet::V4(p) => {
                        prop_assert!(net("10.100.0.0/16").contains(&IpNet::V4(*p)));
                        prop_assert_eq!(p.prefix_len(), 24);
                    }
                }
            }
            for a in &rec.addresses {
                prop_assert!(!rec.client_prefixes.iter().any(|c| c.contains(a)));
            }
        }
    }
}

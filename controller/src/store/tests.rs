use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_800_000_000;

fn settings() -> MeshSettings {
    MeshSettings {
        ula: "fd12:3456:789a::/48".parse().expect("ula"),
        ipv4: "10.99.0.0/16".parse().expect("v4"),
        approval: false,
        controller_public_key: PublicKeyBytes([9; 32]),
        clients_ipv4: Some("10.100.0.0/16".parse().expect("clients")),
        client_subnet_len: 24,
    }
}

fn fresh() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mesh.db");
    let mut store = Store::open(&path).expect("open");
    store.init(&settings()).expect("init");
    (dir, path, store)
}

fn enrol(
    store: &mut Store,
    key: u8,
    token: &str,
    want: &[IpAddr],
    prefixes: &[IpNet],
) -> Result<NodeRecord> {
    store.enroll(
        &Enrollment {
            key: PublicKeyBytes([key; 32]),
            hostname: "node",
            endpoints: &[],
            token,
            want_addresses: want,
            prefixes,
            roles: Default::default(),
        },
        NOW,
    )
}

#[test]
fn migrations_reach_the_latest_version_and_init_is_once() {
    let (_dir, path, mut store) = fresh();
    assert_eq!(
        store.schema_version().expect("v"),
        i64::try_from(Store::latest_schema()).expect("n")
    );
    assert_eq!(store.settings().expect("settings"), settings());
    assert!(matches!(
        store.init(&settings()),
        Err(StoreError::AlreadyInitialised)
    ));
    drop(store);
    let again = Store::open(&path).expect("reopen");
    assert_eq!(again.settings().expect("settings"), settings());
}

#[test]
fn bad_settings_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("x.db")).expect("open");
    let mut s = settings();
    s.ula = "2001:db8::/48".parse().expect("net");
    assert!(matches!(store.init(&s), Err(StoreError::BadSettings(_))));
    let mut s = settings();
    s.ipv4 = "10.0.0.0/31".parse().expect("net");
    assert!(matches!(store.init(&s), Err(StoreError::BadSettings(_))));
}

#[test]
fn enrolment_allocates_the_lowest_free_addresses_and_uses_the_token_once() {
    let (_dir, _path, mut store) = fresh();
    let t1 = store.create_token(NOW + 60, &[], NOW).expect("token");
    let t2 = store.create_token(NOW + 60, &[], NOW).expect("token");
    let a = enrol(&mut store, 1, &t1, &[], &[]).expect("enrol a");
    assert_eq!(a.state, NodeState::Active);
    assert_eq!(
        a.addresses,
        vec![
            "fd12:3456:789a::1/128".parse::<IpNet>().expect("net"),
            "10.99.0.1/32".parse().expect("net")
        ]
    );
    let before = store.dump().expect("dump");
    assert!(matches!(
        enrol(&mut store, 2, &t1, &[], &[]),
        Err(StoreError::TokenUsed)
    ));
    assert_eq!(
        store.dump().expect("dump"),
        before,
        "a refused enrolment writes nothing"
    );
    let b = enrol(&mut store, 2, &t2, &[], &[]).expect("enrol b");
    assert_eq!(
        b.addresses[1],
        "10.99.0.2/32".parse::<IpNet>().expect("net")
    );
}

#[test]
fn every_refusal_leaves_the_database_unchanged() {
    let (_dir, _path, mut store) = fresh();
    let expired = store.create_token(NOW - 1, &[], NOW - 100).expect("token");
    let good = store
        .create_token(NOW + 60, &["10.20.0.0/24".parse().expect("net")], NOW)
        .expect("token");
    let first = store.create_token(NOW + 60, &[], NOW).expect("token");
    enrol(
        &mut store,
        1,
        &first,
        &["10.99.0.7".parse().expect("ip")],
        &[],
    )
    .expect("wanted address");
    let before = store.dump().expect("dump");
    let cases: Vec<(Result<NodeRecord>, &str)> = vec![
        (
            enrol(&mut store, 2, "fmj1-wrong", &[], &[]),
            "no such join token",
        ),
        (enrol(&mut store, 2, &expired, &[], &[]), "expired"),
        (
            enrol(
                &mut store,
                2,
                &good,
                &["10.98.0.1".parse().expect("ip")],
                &[],
            ),
            "outside the mesh pools",
        ),
        (
            enrol(&mut store, 2, &good, &["fd00::1".parse().expect("ip")], &[]),
            "outside the mesh pools",
        ),
        (
            enrol(
                &mut store,
                2,
                &good,
                &["10.99.0.7".parse().expect("ip")],
                &[],
            ),
            "belongs to another node",
        ),
        (
            enrol(
                &mut store,
                2,
                &good,
                &[],
                &["10.30.0.0/24".parse().expect("net")],
            ),
            "not approved",
        ),
        (enrol(&mut store, 1, &good, &[], &[]), "already registered"),
    ];
    for (result, expect) in cases {
        let err = result.expect_err(expect);
        assert!(
            err.to_string().contains(expect),
            "{err} should say {expect}"
        );
        assert_eq!(store.dump().expect("dump"), before, "{expect}");
    }
    let ok = enrol(
        &mut store,
        2,
        &good,
        &[],
        &["10.20.0.0/24".parse().expect("net")],
    )
    .expect("ok");
    assert_eq!(
        store.prefixes().expect("prefixes"),
        vec![(ok.id, "10.20.0.0/24".parse().expect("net"))]
    );
}

#[test]
fn pending_approve_and_revoke() {
    let (_dir, _path, mut store) = fresh();
    let p = store
        .add_pending(
            PublicKeyBytes([5; 32]),
            "kita",
            &[],
            Default::default(),
            NOW,
        )
        .expect("pending");
    assert!(p.addresses.is_empty());
    let a = store.approve(p.id).expect("approve");
    assert_eq!(a.state, NodeState::Active);
    assert_eq!(a.addresses.len(), 2);
    assert!(matches!(
        store.approve(p.id),
        Err(StoreError::WrongState(..))
    ));
    store
        .approve_prefix(a.id, "10.40.0.0/24".parse().expect("net"))
        .expect("prefix");
    store.revoke(a.id).expect("revoke");
    assert_eq!(store.node(a.id).expect("node").state, NodeState::Revoked);
    assert!(matches!(store.revoke(a.id), Err(StoreError::NoSuchNode(_))));
    assert!(matches!(
        store.approve_prefix(99, "10.41.0.0/24".parse().expect("net")),
        Err(StoreError::NoSuchNode(99))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    /// IPAM never hands out one address twice, whatever mix of allocated
    /// and requested addresses, also after the database is reopened.
    #[test]
    fn ipam_never_assigns_twice_across_reopen(
        wants in proptest::collection::vec(proptest::option::of(1u8..40), 1..40),
        reopen_at in 0usize..40,
    ) {
        let (_dir, path, store) = fresh();
        let mut store = Some(store);
        for (i, want) in wants.iter().enumerate() {
            if i == reopen_at {
                drop(store.take());
                store = Some(Store::open(&path).expect("reopen"));
            }
            let s = store.as_mut().expect("store");
            let token = s.create_token(NOW + 60, &[], NOW).expect("token");
            let want: Vec<IpAddr> = want.iter().map(|w| IpAddr::from([10, 99, 0, *w])).collect();
            let key = u8::try_from(i).expect("few");
            match enrol(s, key, &token, &want, &[]) {
                Ok(_) | Err(StoreError::AddressTaken(_)) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        let nodes = store.as_ref().expect("store").nodes().expect("nodes");
        let mut seen = BTreeSet::new();
        for n in &nodes {
            for a in &n.addresses {
                prop_assert!(seen.insert(*a), "{a} assigned twice");
            }
        }
    }
}

#[test]
fn operator_link_costs_survive_measurements_and_can_be_cleared() {
    let (_dir, _path, mut store) = fresh();
    let mut ids = Vec::new();
    for key in [1, 2] {
        let token = store.create_token(NOW + 60, &[], NOW).expect("token");
        ids.push(enrol(&mut store, key, &token, &[], &[]).expect("enrol").id);
    }
    let (a, b) = (ids[0].min(ids[1]), ids[0].max(ids[1]));
    let link = LinkRecord {
        a,
        b,
        rtt_us: Some(900),
        loss_ppm: Some(0),
        up: true,
        override_cost: None,
    };
    store.save_links(&[link], NOW).expect("save");
    assert!(matches!(
        store.set_link_cost(b, b + 7, Some(5)),
        Err(StoreError::NoSuchLink(..))
    ));
    store
        .set_link_cost(b, a, Some(50_000))
        .expect("either order of the ends");
    // A new measurement does not overwrite the operator's choice.
    store
        .save_links(
            &[LinkRecord {
                rtt_us: Some(700),
                ..link
            }],
            NOW + 1,
        )
        .expect("save");
    let links = store.links().expect("links");
    assert_eq!(links[0].override_cost, Some(50_000));
    assert_eq!(links[0].rtt_us, Some(700));
    store.set_link_cost(a, b, None).expect("clear");
    assert_eq!(store.links().expect("links")[0].override_cost, None);
}

/// An in-memory store with one enrolled node (for other modules' tests).
pub(super) fn enrolled_store() -> (Store, u32) {
    let mut store = Store::open_in_memory().expect("open");
    store.init(&settings()).expect("init");
    let token = store.create_token(NOW + 60, &[], NOW).expect("token");
    let node = enrol(&mut store, 1, &token, &[], &[]).expect("enrol");
    (store, node.id)
}

//! Roles need the operator: requested (Hello) and approved (operator,
//! join token) are kept apart and only both together put a role in effect.

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::api::Role;
use freimesh_proto::control::Roles;

use super::*;

const NOW: i64 = 1_800_000_000;
const BOTH: Roles = Roles {
    gateway: true,
    public_wifi: true,
};
const GATEWAY: Roles = Roles {
    gateway: true,
    public_wifi: false,
};

fn fresh() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mesh.db");
    let mut store = Store::open(&path).expect("open");
    store
        .init(&MeshSettings {
            ula: "fd12:3456:789a::/48".parse().expect("ula"),
            ipv4: "10.99.0.0/16".parse().expect("v4"),
            approval: true,
            controller_public_key: PublicKeyBytes([9; 32]),
            clients_ipv4: Some("10.100.0.0/16".parse().expect("clients")),
            client_subnet_len: 24,
        })
        .expect("init");
    (dir, path, store)
}

fn enrol(store: &mut Store, key: u8, token: &str, requested: Roles) -> NodeRecord {
    store
        .enroll(
            &Enrollment {
                key: PublicKeyBytes([key; 32]),
                hostname: "node",
                endpoints: &[],
                token,
                want_addresses: &[],
                prefixes: &[],
                roles: requested,
            },
            NOW,
        )
        .expect("enrol")
}

#[test]
fn a_requested_role_takes_effect_only_once_approved_and_survives_reopen() {
    let (_dir, path, mut store) = fresh();
    let token = store.create_token(NOW + 3600, &[], NOW).expect("token");
    let n = enrol(&mut store, 1, &token, BOTH);
    assert_eq!(n.requested_roles, BOTH);
    assert_eq!(n.approved_roles, Roles::default());
    assert_eq!(n.roles(), Roles::default(), "a request is no role");
    assert_eq!(n.roles_awaiting(), BOTH);
    assert!(
        n.client_prefixes.is_empty(),
        "no client pool before approval"
    );

    let n = store
        .set_role_approval(n.id, Role::Gateway, true)
        .expect("approve gateway");
    assert!(n.gateway && !n.public_wifi);
    let n = store
        .set_role_approval(n.id, Role::PublicWifi, true)
        .expect("approve public wifi");
    assert!(n.public_wifi);
    assert_eq!(n.client_prefixes.len(), 2, "subnets allocated on approval");
    drop(store);

    let mut store = Store::open(&path).expect("reopen");
    let again = store.node(n.id).expect("node");
    assert_eq!(again, n);
    // The node stops asking for the gateway role: the approval stays, the
    // role is no longer in effect.
    let n = store
        .set_roles(n.id, Roles::default())
        .expect("request none");
    assert_eq!(n.roles(), Roles::default());
    assert_eq!(n.approved_roles, BOTH);
    // Revoking the approval withdraws the role even while requested.
    store.set_roles(n.id, BOTH).expect("request both");
    let n = store
        .set_role_approval(n.id, Role::Gateway, false)
        .expect("revoke gateway");
    assert!(!n.gateway && n.public_wifi);
    drop(store);
    let store = Store::open(&path).expect("reopen");
    assert!(!store.node(n.id).expect("node").gateway);
}

#[test]
fn token_roles_are_approved_at_enrolment_and_kept_across_reopen() {
    let (_dir, path, mut store) = fresh();
    store
        .create_token_with_roles(NOW + 3600, &[], GATEWAY, NOW)
        .expect("token");
    drop(store);
    let mut store = Store::open(&path).expect("reopen");
    let tokens = store.tokens().expect("tokens");
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].roles, vec![Role::Gateway]);
    // The token's value is gone; make two more to enrol with.
    let with = store
        .create_token_with_roles(NOW + 3600, &[], GATEWAY, NOW)
        .expect("token");
    let without = store.create_token(NOW + 3600, &[], NOW).expect("token");
    let gw = enrol(&mut store, 1, &with, BOTH);
    assert!(gw.gateway, "pre-approved by its token: in effect at once");
    assert!(!gw.public_wifi, "the token did not approve public Wi-Fi");
    let plain = enrol(&mut store, 2, &without, GATEWAY);
    assert!(!plain.gateway);
    drop(store);
    let store = Store::open(&path).expect("reopen");
    assert!(store.node(gw.id).expect("gw").gateway);
    assert!(!store.node(plain.id).expect("plain").gateway);
}

#[test]
fn a_pending_node_gets_no_role_from_its_request_or_its_approval() {
    let (_dir, _path, mut store) = fresh();
    let p = store
        .add_pending(PublicKeyBytes([3; 32]), "p", &[], BOTH, NOW)
        .expect("pending");
    assert_eq!(p.roles(), Roles::default());
    let p = store.approve(p.id).expect("approve node");
    assert_eq!(
        p.roles(),
        Roles::default(),
        "approving a node is not approving its roles"
    );
    assert!(p.client_prefixes.is_empty());
}

#[test]
fn refused_role_changes_write_nothing() {
    let (_dir, _path, mut store) = fresh();
    let token = store.create_token(NOW + 3600, &[], NOW).expect("token");
    let n = enrol(&mut store, 1, &token, GATEWAY);
    store.revoke(n.id).expect("revoke");
    let before = store.dump().expect("dump");
    assert!(matches!(
        store.set_role_approval(n.id, Role::Gateway, true),
        Err(StoreError::WrongState(..))
    ));
    assert!(matches!(
        store.set_role_approval(99, Role::Gateway, true),
        Err(StoreError::NoSuchNode(99))
    ));
    assert_eq!(store.dump().expect("dump"), before);
}

#[test]
fn approving_public_wifi_without_a_client_pool_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("mesh.db")).expect("open");
    store
        .init(&MeshSettings {
            ula: "fd12:3456:789a::/48".parse().expect("ula"),
            ipv4: "10.99.0.0/16".parse().expect("v4"),
            approval: false,
            controller_public_key: PublicKeyBytes([9; 32]),
            clients_ipv4: None,
            client_subnet_len: 24,
        })
        .expect("init");
    let token = store.create_token(NOW + 3600, &[], NOW).expect("token");
    let public = Roles {
        gateway: false,
        public_wifi: true,
    };
    // Requested without approval: enrols fine, no pool needed.
    let n = enrol(&mut store, 1, &token, public);
    let before = store.dump().expect("dump");
    assert!(matches!(
        store.set_role_approval(n.id, Role::PublicWifi, true),
        Err(StoreError::NoClientPool)
    ));
    assert_eq!(store.dump().expect("dump"), before);
}

#[test]
fn roles_in_effect_before_the_upgrade_count_as_approved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mesh.db");
    {
        // The database as schema 3 (gateways and public Wi-Fi, no
        // approvals) left it: node 1 a gateway, node 2 an ordinary node.
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        schema::migrate_to(&mut conn, 3).expect("schema 3");
        conn.execute_batch(&format!(
            "INSERT INTO settings (id, ula, ipv4, approval, controller_public_key)
                 VALUES (1, 'fd12:3456:789a::/48', '10.99.0.0/16', 0, '{key}');
             INSERT INTO nodes (public_key, hostname, addr6_index, addr4_index, state, created_at, gateway)
                 VALUES ('{k1}', 'gw', 1, 1, 'active', 0, 1), ('{k2}', 'plain', 2, 2, 'active', 0, 0);",
            key = PublicKeyBytes([9; 32]).to_base64(),
            k1 = PublicKeyBytes([1; 32]).to_base64(),
            k2 = PublicKeyBytes([2; 32]).to_base64(),
        ))
        .expect("rows");
    }
    let store = Store::open(&path).expect("upgrade");
    assert_eq!(
        store.schema_version().expect("version"),
        Store::latest_schema() as i64
    );
    let gw = store.node(1).expect("gw");
    assert!(gw.gateway, "an upgrade takes no gateway away");
    assert_eq!(gw.approved_roles, GATEWAY);
    let plain = store.node(2).expect("plain");
    assert_eq!(plain.approved_roles, Roles::default());
    assert!(!plain.gateway);
}

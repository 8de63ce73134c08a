//! Every bad input of the controller issue, over the real wire: the peer
//! gets a clear Error, the connection is closed and the database is
//! byte-for-byte unchanged.

mod common;

use common::{Mesh, dump, raw_exchange};
use freimesh_agent::identity::PrivateKey;
use freimesh_controller::store::Store;
use freimesh_proto::PROTOCOL_VERSION;
use freimesh_proto::control::{self, AgentMsg, ControllerMsg, ErrorCode, Hello};

fn hello(token: Option<&str>) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        join_token: token.map(str::to_owned),
        hostname: "probe".into(),
        endpoints: vec![],
        prefixes: vec![],
        want_addresses: vec![],
        roles: Default::default(),
    }
}

fn frame(h: Hello) -> Vec<u8> {
    control::encode(&AgentMsg::Hello(h)).expect("encode")
}

/// Sends `frames`, expects exactly an Error with `code` whose message
/// contains `says`, and an unchanged database.
async fn refused(mesh: &Mesh, key: &PrivateKey, frames: Vec<Vec<u8>>, code: ErrorCode, says: &str) {
    let before = dump(mesh);
    let got = raw_exchange(mesh, key, &frames).await;
    match got.last() {
        Some(ControllerMsg::Error(e)) => {
            assert_eq!(e.code, code, "{e}");
            assert!(
                e.message.contains(says),
                "{:?} should contain {says:?}",
                e.message
            );
        }
        other => panic!("expected an Error {code:?}, got {other:?} after {got:?}"),
    }
    assert_eq!(dump(mesh), before, "{code:?} changed the database");
}

async fn enrolled(mesh: &Mesh) -> PrivateKey {
    let key = PrivateKey::generate();
    let token = mesh.token();
    let got = raw_exchange(
        mesh,
        &key,
        &[
            frame(hello(Some(&token))),
            control::encode(&AgentMsg::Hello(hello(None))).expect("enc"),
        ],
    )
    .await;
    assert!(
        matches!(got.first(), Some(ControllerMsg::Welcome(_))),
        "{got:?}"
    );
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_truncated_and_wrong_version_frames() {
    let mesh = Mesh::start(false).await;
    let key = PrivateKey::generate();
    refused(
        &mesh,
        &key,
        vec![vec![0xff, 0xfe, 0x01]],
        ErrorCode::Malformed,
        "first frame",
    )
    .await;
    let full = frame(hello(Some("fmj1-x")));
    refused(
        &mesh,
        &key,
        vec![full[..full.len() - 3].to_vec()],
        ErrorCode::Malformed,
        "first frame",
    )
    .await;
    let mut trailing = full.clone();
    trailing.push(0);
    refused(
        &mesh,
        &key,
        vec![trailing],
        ErrorCode::Malformed,
        "trailing",
    )
    .await;
    refused(
        &mesh,
        &key,
        vec![control::encode(&AgentMsg::Ping(1)).expect("enc")],
        ErrorCode::Malformed,
        "must be Hello",
    )
    .await;
    let mut future = hello(None);
    future.version = PROTOCOL_VERSION + 7;
    refused(
        &mesh,
        &key,
        vec![frame(future)],
        ErrorCode::UnsupportedVersion,
        "not supported",
    )
    .await;
    // A future Hello this build cannot even parse past the version.
    refused(
        &mesh,
        &key,
        vec![vec![0, 42, 0xff, 0xff, 0xff, 0xff]],
        ErrorCode::UnsupportedVersion,
        "42",
    )
    .await;
    // Garbage after a successful Welcome: closed too.
    let ok = enrolled(&mesh).await;
    refused(
        &mesh,
        &ok,
        vec![frame(hello(None)), vec![0x09, 0x09]],
        ErrorCode::Malformed,
        "frame",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_wrong_expired_reused() {
    let mesh = Mesh::start(false).await;
    let key = PrivateKey::generate();
    refused(
        &mesh,
        &key,
        vec![frame(hello(Some("fmj1-0000")))],
        ErrorCode::TokenInvalid,
        "no such join token",
    )
    .await;
    let expired = {
        let mut store = Store::open(&mesh.db).expect("open");
        let now = freimesh_controller::admin::unix_now();
        store.create_token(now - 1, &[], now - 60).expect("token")
    };
    refused(
        &mesh,
        &key,
        vec![frame(hello(Some(&expired)))],
        ErrorCode::TokenExpired,
        "expired",
    )
    .await;
    let token = mesh.token();
    let got = raw_exchange(
        &mesh,
        &PrivateKey::generate(),
        &[frame(hello(Some(&token))), vec![0xff]],
    )
    .await;
    assert!(matches!(got.first(), Some(ControllerMsg::Welcome(_))));
    refused(
        &mesh,
        &key,
        vec![frame(hello(Some(&token)))],
        ErrorCode::TokenUsed,
        "already used",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_revoked_keys() {
    let mesh = Mesh::start(false).await;
    refused(
        &mesh,
        &PrivateKey::generate(),
        vec![frame(hello(None))],
        ErrorCode::UnknownKey,
        "unknown key",
    )
    .await;
    let key = enrolled(&mesh).await;
    let id = freimesh_controller::admin::node_list(&mesh.db).expect("list")[0].id;
    freimesh_controller::admin::node_revoke(&mesh.db, id).expect("revoke");
    // The server notices the CLI's change within REGISTRY_POLL.
    tokio::time::sleep(freimesh_controller::server::REGISTRY_POLL * 3).await;
    refused(
        &mesh,
        &key,
        vec![frame(hello(None))],
        ErrorCode::Revoked,
        "revoked",
    )
    .await;
    let token = mesh.token();
    refused(
        &mesh,
        &key,
        vec![frame(hello(Some(&token)))],
        ErrorCode::Revoked,
        "revoked",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unapproved_prefix_and_out_of_pool_addresses() {
    let mesh = Mesh::start(false).await;
    let token = mesh.token();
    let mut h = hello(Some(&token));
    h.prefixes = vec!["10.20.0.0/24".parse().expect("net")];
    refused(
        &mesh,
        &PrivateKey::generate(),
        vec![frame(h)],
        ErrorCode::PrefixNotApproved,
        "10.20.0.0/24",
    )
    .await;
    let key = enrolled(&mesh).await;
    let mut h = hello(None);
    h.prefixes = vec!["10.21.0.0/24".parse().expect("net")];
    refused(
        &mesh,
        &key,
        vec![frame(h)],
        ErrorCode::PrefixNotApproved,
        "prefix approve",
    )
    .await;
    for want in ["10.98.0.1", "192.0.2.1", "fd00::1", "10.99.255.255"] {
        let mut h = hello(Some(&token));
        h.want_addresses = vec![want.parse().expect("ip")];
        refused(
            &mesh,
            &PrivateKey::generate(),
            vec![frame(h)],
            ErrorCode::AddressOutOfPool,
            "outside the mesh pools",
        )
        .await;
    }
    // An approved prefix is accepted.
    let id = freimesh_controller::admin::node_list(&mesh.db).expect("list")[0].id;
    freimesh_controller::admin::prefix_approve(&mesh.db, id, "10.21.0.0/24".parse().expect("net"))
        .expect("approve");
    tokio::time::sleep(freimesh_controller::server::REGISTRY_POLL * 3).await;
    let mut h = hello(None);
    h.prefixes = vec!["10.21.0.0/24".parse().expect("net")];
    let got = raw_exchange(&mesh, &key, &[frame(h), vec![0xff]]).await;
    assert!(
        matches!(got.first(), Some(ControllerMsg::Welcome(_))),
        "{got:?}"
    );
}

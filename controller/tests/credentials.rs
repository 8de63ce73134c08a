//! End to end over loopback: agents' control-plane clients get membership
//! credentials that a neighbour can check offline, and hear of a
//! revocation the command line makes at once.

mod common;

use common::{Agent, Mesh};
use freimesh_agent::controlplane::{ControllerEvent, MembershipUpdate, apply_to_membership};
use freimesh_agent::membership::{Membership, MembershipError};
use freimesh_controller::admin;

/// Folds `agent`'s events into `membership` until one matches `until`.
async fn fold_until(
    agent: &mut Agent,
    membership: &mut Membership,
    what: &str,
    until: impl Fn(&[MembershipUpdate]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, agent.events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("client stopped while waiting for {what}"));
        let updates = apply_to_membership(membership, &agent.public, &event);
        if until(&updates) {
            return;
        }
        if let ControllerEvent::Refused(e) = event {
            panic!("refused while waiting for {what}: {e:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_verify_between_neighbours_and_a_revocation_reaches_them_at_once() {
    let mesh = Mesh::start(false).await;
    let mut a = mesh.client("a", Some(mesh.token()));
    let mut b = mesh.client("b", Some(mesh.token()));
    let (mut ma, mut mb) = (Membership::new(), Membership::new());
    let credential = |u: &[MembershipUpdate]| {
        u.iter()
            .any(|u| matches!(u, MembershipUpdate::Credential { .. }))
    };
    fold_until(&mut a, &mut ma, "a's credential", credential).await;
    fold_until(&mut b, &mut mb, "b's credential", credential).await;
    let keys = admin::keys(&mesh.db).expect("keys");
    assert_eq!(ma.signing_key(), Some(keys.signing));
    assert_eq!(keys.control, mesh.controller_key);

    let now = u64::try_from(admin::unix_now()).expect("after 1970");
    let b_credential = mb.own_credential().expect("b holds one").clone();
    let checked = ma
        .check_neighbour(&b.public, &b_credential, now)
        .expect("a accepts b offline");
    assert_eq!(checked.node_key, b.public);
    assert!(checked.expires_unix_s > now + 6 * 24 * 3_600);
    // b's credential does not pass for a's key.
    assert!(matches!(
        mb.check_neighbour(&a.public, &b_credential, now),
        Err(MembershipError::KeyMismatch { .. })
    ));

    // The operator revokes b on the command line: a hears of it within
    // the registry poll, and refuses b's credential from then on.
    let b_id = admin::node_list(&mesh.db)
        .expect("list")
        .into_iter()
        .find(|n| n.public_key == b.public)
        .expect("b")
        .id;
    admin::node_revoke(&mesh.db, b_id).expect("revoke");
    fold_until(&mut a, &mut ma, "the revocation list", |u| {
        u.iter()
            .any(|u| matches!(u, MembershipUpdate::Revocations { serial: 1, .. }))
    })
    .await;
    assert!(ma.is_revoked(&b.public));
    assert_eq!(
        ma.check_neighbour(&b.public, &b_credential, now),
        Err(MembershipError::Revoked(b.public))
    );
}

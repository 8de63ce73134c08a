//! The controller's membership frames through the session into the
//! agent's membership: taken when signed right, refused (and the previous
//! state kept) when forged.

use std::time::Instant;

use ed25519_dalek::SigningKey;
use freimesh_proto::NodeId;
use freimesh_proto::control::{ControllerMsg, Roles, Welcome};
use freimesh_proto::credential::{
    Credential, CredentialError, RevocationPage, Revoked, SignedCredential, SignedRevocationPage,
};

use super::*;
use crate::controlplane::{ClientConfig, Session};

const OWN: PublicKeyBytes = PublicKeyBytes([1; 32]);

fn controller() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn credential(
    node_key: PublicKeyBytes,
    expires_unix_s: u64,
    signer: &SigningKey,
) -> SignedCredential {
    Credential {
        node_key,
        node_id: NodeId::of(&node_key),
        addresses: vec!["fd00::1/128".parse().expect("net")],
        roles: Roles::default(),
        prefixes: vec![],
        issued_unix_s: 1_000,
        expires_unix_s,
    }
    .sign(signer)
    .expect("sign")
}

fn pages(serial: u64, revoked: &[u8]) -> Vec<SignedRevocationPage> {
    let entries: Vec<Revoked> = revoked
        .iter()
        .map(|n| Revoked {
            node_key: PublicKeyBytes([*n; 32]),
            until_unix_s: 9_000,
        })
        .collect();
    RevocationPage::paginate(serial, 1_000, &entries)
        .expect("paginate")
        .iter()
        .map(|p| p.sign(&controller()).expect("sign"))
        .collect()
}

fn welcome() -> ControllerMsg {
    ControllerMsg::Welcome(Welcome {
        node_id: NodeId::of(&OWN),
        addresses: vec!["fd00::1/128".parse().expect("net")],
        mesh_prefixes: vec![],
        client_prefixes: vec![],
        signing_key: SigningKeyBytes::of(&controller()),
    })
}

/// Feeds `frames` through a welcomed session into `membership`; returns
/// every update.
fn feed(membership: &mut Membership, frames: Vec<ControllerMsg>) -> Vec<MembershipUpdate> {
    let now = Instant::now();
    let mut session = Session::new(ClientConfig {
        controller_endpoints: vec!["127.0.0.1:7700".parse().expect("addr")],
        controller_key: PublicKeyBytes([2; 32]),
        join_token: None,
        hostname: "t".into(),
        endpoints: vec![],
        prefixes: vec![],
        want_addresses: vec![],
        roles: Roles::default(),
    });
    session.handle_connected(now);
    let mut updates = Vec::new();
    for frame in frames {
        session.handle_message(frame, now).expect("frame");
        while let Some(event) = session.poll_event() {
            updates.extend(apply_to_membership(membership, &OWN, &event));
        }
    }
    updates
}

#[test]
fn welcome_credential_and_revocations_fill_the_membership() {
    let mut m = Membership::new();
    let updates = feed(
        &mut m,
        vec![
            welcome(),
            ControllerMsg::Credential(credential(OWN, 5_000, &controller())),
            ControllerMsg::Revocations(pages(3, &[8, 9])),
        ],
    );
    assert_eq!(
        updates,
        vec![
            MembershipUpdate::SigningKey {
                key: SigningKeyBytes::of(&controller()),
                replaced: false
            },
            MembershipUpdate::Credential {
                expires_unix_s: 5_000
            },
            MembershipUpdate::Revocations {
                serial: 3,
                revoked: 2,
                newly_revoked: vec![PublicKeyBytes([8; 32]), PublicKeyBytes([9; 32])],
            },
        ]
    );
    assert_eq!(
        m.own_credential_decoded().map(|c| c.expires_unix_s),
        Some(5_000)
    );
    assert!(m.is_revoked(&PublicKeyBytes([9; 32])));
    // The same list again changes nothing and says nothing.
    assert!(feed(&mut m, vec![ControllerMsg::Revocations(pages(3, &[8, 9]))]).is_empty());
}

#[test]
fn a_forged_credential_is_refused_and_the_previous_one_stays() {
    let mut m = Membership::new();
    feed(
        &mut m,
        vec![
            welcome(),
            ControllerMsg::Credential(credential(OWN, 5_000, &controller())),
        ],
    );
    let forger = SigningKey::from_bytes(&[66; 32]);
    let mut tampered = credential(OWN, 5_000, &controller());
    tampered.body[2] ^= 1;
    let updates = feed(
        &mut m,
        vec![
            ControllerMsg::Credential(credential(OWN, 99_000, &forger)),
            ControllerMsg::Credential(tampered),
            // Signed right, but for another node.
            ControllerMsg::Credential(credential(PublicKeyBytes([3; 32]), 99_000, &controller())),
        ],
    );
    assert!(matches!(
        &updates[..],
        [
            MembershipUpdate::CredentialRefused(MembershipError::Credential(
                CredentialError::BadSignature
            )),
            MembershipUpdate::CredentialRefused(MembershipError::Credential(_)),
            MembershipUpdate::CredentialRefused(MembershipError::NotOurs(_)),
        ]
    ));
    assert_eq!(
        m.own_credential_decoded().map(|c| c.expires_unix_s),
        Some(5_000)
    );
}

#[test]
fn a_credential_before_any_welcome_or_a_forged_page_is_refused() {
    let mut m = Membership::new();
    let event = ControllerEvent::Credential(credential(OWN, 5_000, &controller()));
    assert_eq!(
        apply_to_membership(&mut m, &OWN, &event),
        vec![MembershipUpdate::CredentialRefused(
            MembershipError::NoSigningKey
        )]
    );
    feed(&mut m, vec![welcome()]);
    let mut forged = pages(4, &[1]);
    forged[0].signature[0] ^= 1;
    let updates = feed(&mut m, vec![ControllerMsg::Revocations(forged)]);
    assert!(matches!(&updates[..], [MembershipUpdate::PageRefused(_)]));
    assert!(!m.is_revoked(&OWN));
    assert_eq!(m.revocation_serial(), 0);
}

#[test]
fn a_new_signing_key_is_reported_as_replaced() {
    let mut m = Membership::new();
    feed(&mut m, vec![welcome()]);
    let other = ControllerEvent::Welcome(Welcome {
        node_id: NodeId::of(&OWN),
        addresses: vec![],
        mesh_prefixes: vec![],
        client_prefixes: vec![],
        signing_key: SigningKeyBytes([4; 32]),
    });
    assert!(matches!(
        &apply_to_membership(&mut m, &OWN, &other)[..],
        [MembershipUpdate::SigningKey { replaced: true, .. }]
    ));
}

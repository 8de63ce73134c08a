use ed25519_dalek::SigningKey;
use freimesh_proto::NodeId;
use freimesh_proto::control::Roles;
use freimesh_proto::credential::{Credential, RevocationPage, Revoked};

use super::*;

fn controller() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn key(n: u8) -> PublicKeyBytes {
    PublicKeyBytes([n; 32])
}

fn credential_for(n: u8, expires_unix_s: u64) -> SignedCredential {
    Credential {
        node_key: key(n),
        node_id: NodeId::of(&key(n)),
        addresses: vec![format!("fd00::{n}/128").parse().expect("prefix")],
        roles: Roles::default(),
        prefixes: vec![],
        issued_unix_s: 0,
        expires_unix_s,
    }
    .sign(&controller())
    .expect("sign")
}

fn pages(serial: u64, revoked: &[u8]) -> Vec<SignedRevocationPage> {
    let entries: Vec<Revoked> = revoked
        .iter()
        .map(|n| Revoked {
            node_key: key(*n),
            until_unix_s: 10_000,
        })
        .collect();
    RevocationPage::paginate(serial, 0, &entries)
        .expect("paginate")
        .iter()
        .map(|p| p.sign(&controller()).expect("sign"))
        .collect()
}

fn enrolled() -> Membership {
    let mut m = Membership::new();
    m.set_signing_key(SigningKeyBytes::of(&controller()));
    m.set_own_credential(&key(1), credential_for(1, 5_000))
        .expect("own credential");
    m
}

#[test]
fn a_neighbour_with_a_valid_credential_is_accepted_offline() {
    let m = enrolled();
    let checked = m
        .check_neighbour(&key(2), &credential_for(2, 5_000), 100)
        .expect("accepted");
    assert_eq!(checked.node_key, key(2));
}

#[test]
fn expired_foreign_or_mismatched_credentials_are_refused() {
    let m = enrolled();
    assert!(matches!(
        m.check_neighbour(&key(2), &credential_for(2, 50), 100),
        Err(MembershipError::Credential(CredentialError::Expired { .. }))
    ));
    assert!(matches!(
        m.check_neighbour(&key(3), &credential_for(2, 5_000), 100),
        Err(MembershipError::KeyMismatch { .. })
    ));
    let forged = Credential {
        node_key: key(2),
        node_id: NodeId::of(&key(2)),
        addresses: vec![],
        roles: Roles::default(),
        prefixes: vec![],
        issued_unix_s: 0,
        expires_unix_s: 5_000,
    }
    .sign(&SigningKey::from_bytes(&[9; 32]))
    .expect("sign");
    assert!(matches!(
        m.check_neighbour(&key(2), &forged, 100),
        Err(MembershipError::Credential(CredentialError::BadSignature))
    ));
    assert_eq!(
        Membership::new().check_neighbour(&key(2), &credential_for(2, 5_000), 100),
        Err(MembershipError::NoSigningKey)
    );
}

#[test]
fn a_revoked_neighbour_is_refused_from_the_first_page_on() {
    let mut m = enrolled();
    let list: Vec<u8> = (10..60).collect();
    let signed = pages(3, &list);
    assert_eq!(signed.len(), 3);
    let outcome = m.handle_revocation_page(&signed[1]).expect("page");
    assert!(matches!(outcome, PageOutcome::Partial { .. }));
    // Entries of page 1 (keys 30..50) are revoked at once.
    assert!(m.is_revoked(&key(30)));
    assert_eq!(
        m.check_neighbour(&key(30), &credential_for(30, 5_000), 100),
        Err(MembershipError::Revoked(key(30)))
    );
    assert_eq!(m.revocation_serial(), 0);
    m.handle_revocation_page(&signed[0]).expect("page");
    let done = m.handle_revocation_page(&signed[2]).expect("page");
    assert!(matches!(done, PageOutcome::Complete { .. }));
    assert_eq!(m.revocation_serial(), 3);
    assert_eq!(m.revoked_keys().count(), 50);
    assert_eq!(m.handle_revocation_page(&signed[0]), Ok(PageOutcome::Known));
}

#[test]
fn a_newer_complete_list_replaces_the_old_one() {
    let mut m = enrolled();
    for page in pages(1, &[5, 6]) {
        m.handle_revocation_page(&page).expect("page");
    }
    for page in pages(2, &[6]) {
        m.handle_revocation_page(&page).expect("page");
    }
    assert!(!m.is_revoked(&key(5)));
    assert!(m.is_revoked(&key(6)));
    m.prune(10_000);
    assert!(!m.is_revoked(&key(6)));
}

#[test]
fn a_new_signing_key_forgets_what_the_old_one_signed() {
    let mut m = enrolled();
    for page in pages(1, &[5]) {
        m.handle_revocation_page(&page).expect("page");
    }
    m.set_signing_key(SigningKeyBytes::of(&SigningKey::from_bytes(&[2; 32])));
    assert!(m.own_credential().is_none());
    assert!(!m.is_revoked(&key(5)));
    assert_eq!(m.revocation_serial(), 0);
}

#[test]
fn a_snapshot_restores_and_is_checked_again() {
    let mut m = enrolled();
    for page in pages(4, &[7]) {
        m.handle_revocation_page(&page).expect("page");
    }
    let snapshot = m.snapshot();
    let (back, errors) = Membership::restore(&key(1), snapshot.clone());
    assert!(errors.is_empty());
    assert_eq!(back.snapshot(), snapshot);
    assert!(back.is_revoked(&key(7)));
    // Restored with another node's key: the credential is not ours.
    let (other, errors) = Membership::restore(&key(2), snapshot);
    assert_eq!(errors, vec![MembershipError::NotOurs(key(1))]);
    assert!(other.own_credential().is_none());
    assert!(other.is_revoked(&key(7)));
}

#[test]
fn revocations_from_a_half_received_list_survive_a_restore() {
    let mut m = enrolled();
    let list: Vec<u8> = (10..60).collect();
    let signed = pages(3, &list);
    m.handle_revocation_page(&signed[1]).expect("page");
    assert!(m.is_revoked(&key(30)));
    let (back, errors) = Membership::restore(&key(1), m.snapshot());
    assert!(errors.is_empty());
    assert!(back.is_revoked(&key(30)));
    assert_eq!(back.revocation_serial(), 0);
}

#[test]
fn a_page_of_a_list_we_have_is_known_without_a_signature_check() {
    let mut m = enrolled();
    for page in pages(3, &[5]) {
        m.handle_revocation_page(&page).expect("page");
    }
    // An old page with a broken signature: decided by its serial alone
    // (a signature check would refuse it).
    let mut old = pages(2, &[7]).remove(0);
    old.signature[0] ^= 1;
    assert_eq!(m.handle_revocation_page(&old), Ok(PageOutcome::Known));
    assert!(!m.is_revoked(&key(7)));
    // A newer one with a broken signature is still checked and refused.
    let mut newer = pages(4, &[7]).remove(0);
    newer.signature[0] ^= 1;
    assert!(m.handle_revocation_page(&newer).is_err());
    assert!(!m.is_revoked(&key(7)));
}

use ed25519_dalek::SigningKey;

use super::*;

fn controller_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn credential(expires_unix_s: u64) -> Credential {
    let node_key = PublicKeyBytes([7; 32]);
    Credential {
        node_key,
        node_id: NodeId::of(&node_key),
        addresses: vec![
            "fd00:1::7/128".parse().expect("prefix"),
            "10.99.0.7/32".parse().expect("prefix"),
        ],
        roles: Roles::default(),
        prefixes: vec!["192.168.7.0/24".parse().expect("prefix")],
        issued_unix_s: 1_000,
        expires_unix_s,
    }
}

#[test]
fn a_signed_credential_verifies_until_it_expires() {
    let key = controller_key(1);
    let signed = credential(2_000).sign(&key).expect("sign");
    let signer = SigningKeyBytes::of(&key);
    assert_eq!(signed.verify(&signer, 1_999), Ok(credential(2_000)));
    assert_eq!(
        signed.verify(&signer, 2_000),
        Err(CredentialError::Expired {
            expired_unix_s: 2_000,
            now_unix_s: 2_000
        })
    );
    // An issue time in the future (a router clock running behind) is fine.
    assert!(signed.verify(&signer, 0).is_ok());
    assert_eq!(
        signed.verify_ignoring_expiry(&signer),
        Ok(credential(2_000))
    );
}

#[test]
fn another_controller_or_a_changed_byte_is_refused() {
    let key = controller_key(1);
    let signed = credential(2_000).sign(&key).expect("sign");
    let other = SigningKeyBytes::of(&controller_key(2));
    assert_eq!(
        signed.verify(&other, 1_500),
        Err(CredentialError::BadSignature)
    );
    let signer = SigningKeyBytes::of(&key);
    for i in 0..signed.body.len() {
        let mut tampered = signed.clone();
        tampered.body[i] ^= 1;
        assert!(tampered.verify(&signer, 1_500).is_err(), "byte {i}");
    }
    let mut short = signed.clone();
    short.signature.pop();
    assert_eq!(
        short.verify(&signer, 1_500),
        Err(CredentialError::SignatureLength(63))
    );
}

#[test]
fn a_node_id_of_another_key_is_refused() {
    let key = controller_key(1);
    let mut c = credential(2_000);
    c.node_id = NodeId::of(&PublicKeyBytes([8; 32]));
    let signed = c.sign(&key).expect("sign");
    assert_eq!(
        signed.verify(&SigningKeyBytes::of(&key), 1_500),
        Err(CredentialError::NodeIdMismatch)
    );
}

#[test]
fn a_revocation_signature_is_not_a_credential_signature() {
    let key = controller_key(1);
    let page = RevocationPage {
        serial: 1,
        page: 0,
        pages: 1,
        issued_unix_s: 5,
        entries: vec![],
    }
    .sign(&key)
    .expect("sign");
    let as_credential = SignedCredential {
        body: page.body.clone(),
        signature: page.signature.clone(),
    };
    assert!(as_credential.verify(&SigningKeyBytes::of(&key), 1).is_err());
}

#[test]
fn a_full_list_paginates_into_pages_that_fit_a_mesh_message() {
    let key = controller_key(3);
    let signer = SigningKeyBytes::of(&key);
    let revoked: Vec<Revoked> = (0..=255u8)
        .map(|i| Revoked {
            node_key: PublicKeyBytes([i; 32]),
            until_unix_s: u64::MAX - u64::from(i),
        })
        .collect();
    let pages = RevocationPage::paginate(9, 100, &revoked).expect("paginate");
    assert_eq!(pages.len(), 13);
    let mut back = Vec::new();
    for page in &pages {
        let signed = page.sign(&key).expect("sign");
        // Signed body, signature and the mesh message header must fit
        // the 1,200-byte in-tunnel limit.
        assert!(signed.body.len() + signed.signature.len() + 64 <= 1_200);
        let checked = signed.verify(&signer).expect("verify");
        assert_eq!(checked.serial, 9);
        back.extend(checked.entries);
    }
    assert_eq!(back, revoked);
    let empty = RevocationPage::paginate(1, 1, &[]).expect("paginate");
    assert_eq!(empty.len(), 1);
    assert!(empty[0].entries.is_empty());
}

#[test]
fn too_many_pages_or_entries_are_refused() {
    let key = controller_key(3);
    let revoked = vec![
        Revoked {
            node_key: PublicKeyBytes([1; 32]),
            until_unix_s: 1,
        };
        MAX_PAGE_ENTRIES * usize::from(MAX_PAGES) + 1
    ];
    assert!(RevocationPage::paginate(1, 1, &revoked).is_err());
    let page = RevocationPage {
        serial: 1,
        page: 0,
        pages: 1,
        issued_unix_s: 1,
        entries: revoked[..MAX_PAGE_ENTRIES + 1].to_vec(),
    };
    assert_eq!(
        page.sign(&key),
        Err(CredentialError::TooManyEntries(MAX_PAGE_ENTRIES + 1))
    );
    let bad = RevocationPage {
        serial: 1,
        page: 1,
        pages: 1,
        issued_unix_s: 1,
        entries: vec![],
    };
    assert!(bad.sign(&key).is_err());
}

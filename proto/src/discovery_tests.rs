use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;
use crate::NodeId;
use crate::control::Roles;
use crate::credential::{
    Credential, MAX_CREDENTIAL_PREFIXES, MAX_PAGE_ENTRIES, RevocationPage, Revoked,
};

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[3; 32])
}

/// The largest credential the controller can sign.
fn largest_credential() -> SignedCredential {
    let node_key = PublicKeyBytes([9; 32]);
    let prefixes: Vec<ipnet::IpNet> = (0..MAX_CREDENTIAL_PREFIXES - 2)
        .map(|i| {
            format!("fd00:{i:x}:ffff:ffff:ffff:ffff:ffff:0/112")
                .parse()
                .expect("prefix")
        })
        .collect();
    Credential {
        node_key,
        node_id: NodeId::of(&node_key),
        addresses: vec![
            "fd00:1::ffff:ffff/128".parse().expect("prefix"),
            "10.99.255.255/32".parse().expect("prefix"),
        ],
        roles: Roles::default(),
        prefixes,
        issued_unix_s: u64::MAX - 1,
        expires_unix_s: u64::MAX,
    }
    .sign(&signing_key())
    .expect("sign")
}

fn beacon(credential: Option<SignedCredential>) -> DiscoveryMessage {
    DiscoveryMessage::Beacon(Beacon {
        node_key: PublicKeyBytes([9; 32]),
        wg_port: 51820,
        credential,
        revocation_serial: u64::MAX,
        wants_reply: true,
    })
}

fn full_page() -> SignedRevocationPage {
    let entries: Vec<Revoked> = (0..MAX_PAGE_ENTRIES)
        .map(|i| Revoked {
            node_key: PublicKeyBytes([u8::try_from(i).expect("small"); 32]),
            until_unix_s: u64::MAX,
        })
        .collect();
    RevocationPage::paginate(u64::MAX, u64::MAX, &entries).expect("paginate")[0]
        .sign(&signing_key())
        .expect("sign")
}

#[test]
fn every_message_round_trips_and_the_largest_fit_one_datagram() {
    let messages = [
        beacon(None),
        beacon(Some(largest_credential())),
        DiscoveryMessage::RevocationRequest { have_serial: 7 },
        DiscoveryMessage::RevocationPages(vec![full_page()]),
    ];
    for message in messages {
        let bytes = message.encode().expect("encode");
        assert!(bytes.len() <= MAX_DATAGRAM, "{} bytes", bytes.len());
        assert_eq!(DiscoveryMessage::decode(&bytes), Ok(message));
    }
}

#[test]
fn a_typical_beacon_is_small() {
    // Two addresses, no prefixes: what most routers carry.
    let node_key = PublicKeyBytes([9; 32]);
    let credential = Credential {
        node_key,
        node_id: NodeId::of(&node_key),
        addresses: vec![
            "fd00:1::7/128".parse().expect("prefix"),
            "10.99.0.7/32".parse().expect("prefix"),
        ],
        roles: Roles::default(),
        prefixes: Vec::new(),
        issued_unix_s: 1_800_000_000,
        expires_unix_s: 1_800_604_800,
    }
    .sign(&signing_key())
    .expect("sign");
    let bytes = beacon(Some(credential)).encode().expect("encode");
    assert!(bytes.len() < 250, "{} bytes", bytes.len());
}

#[test]
fn wrong_magic_version_trailing_bytes_and_size_are_refused() {
    let bytes = beacon(None).encode().expect("encode");
    let mut magic = bytes.clone();
    magic[0] ^= 1;
    assert_eq!(
        DiscoveryMessage::decode(&magic),
        Err(DiscoveryError::BadMagic)
    );
    let mut version = bytes.clone();
    version[MAGIC.len()] = DISCOVERY_VERSION + 1;
    assert_eq!(
        DiscoveryMessage::decode(&version),
        Err(DiscoveryError::Version(DISCOVERY_VERSION + 1))
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        DiscoveryMessage::decode(&trailing),
        Err(DiscoveryError::Trailing(1))
    );
    assert_eq!(
        DiscoveryMessage::decode(&bytes[..MAGIC.len()]),
        Err(DiscoveryError::BadMagic)
    );
    assert!(matches!(
        DiscoveryMessage::decode(&bytes[..bytes.len() - 1]),
        Err(DiscoveryError::Malformed(_))
    ));
    assert_eq!(
        DiscoveryMessage::decode(&[0; MAX_DATAGRAM + 1]),
        Err(DiscoveryError::TooLarge(MAX_DATAGRAM + 1))
    );
    let too_many = DiscoveryMessage::RevocationPages(vec![full_page(); 2]);
    assert!(matches!(
        too_many.encode(),
        Err(DiscoveryError::TooLarge(_))
    ));
}

#[test]
fn too_many_pages_are_refused_before_their_bodies_are_read() {
    let small = SignedRevocationPage {
        body: Vec::new(),
        signature: Vec::new(),
    };
    let message = DiscoveryMessage::RevocationPages(vec![small; MAX_PAGES_PER_DATAGRAM + 1]);
    assert_eq!(
        message.encode(),
        Err(DiscoveryError::TooManyPages(MAX_PAGES_PER_DATAGRAM + 1))
    );
    // The same, built by hand as a stranger would send it.
    let mut bytes = MAGIC.to_vec();
    bytes.push(DISCOVERY_VERSION);
    bytes.push(2); // variant RevocationPages
    bytes.push(u8::try_from(MAX_PAGES_PER_DATAGRAM + 1).expect("small"));
    bytes.extend(std::iter::repeat_n(0, 2 * (MAX_PAGES_PER_DATAGRAM + 1)));
    assert_eq!(
        DiscoveryMessage::decode(&bytes),
        Err(DiscoveryError::TooManyPages(MAX_PAGES_PER_DATAGRAM + 1))
    );
}

proptest! {
    #[test]
    fn garbage_never_panics_and_what_decodes_re_encodes(data in proptest::collection::vec(any::<u8>(), 0..1_300)) {
        let mut framed = MAGIC.to_vec();
        framed.push(DISCOVERY_VERSION);
        framed.extend_from_slice(&data);
        for input in [&data[..], &framed[..]] {
            if let Ok(message) = DiscoveryMessage::decode(input) {
                let again = message.encode().expect("what decodes encodes");
                prop_assert_eq!(DiscoveryMessage::decode(&again), Ok(message));
            }
        }
    }
}

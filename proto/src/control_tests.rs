use proptest::prelude::*;

use super::*;

fn key(b: u8) -> PublicKeyBytes {
    PublicKeyBytes([b; 32])
}

fn hello() -> AgentMsg {
    AgentMsg::Hello(Hello {
        version: crate::PROTOCOL_VERSION,
        join_token: Some("tok".into()),
        hostname: "ap-rathaus".into(),
        endpoints: vec!["192.0.2.1:51820".parse().expect("addr")],
        prefixes: vec!["10.20.0.0/24".parse().expect("net")],
        want_addresses: vec![],
        roles: Default::default(),
    })
}

fn routes() -> ControllerMsg {
    ControllerMsg::Routes {
        routes: vec![Route {
            upstreams: Vec::new(),
            prefix: "fd00::1/128".parse().expect("net"),
            via: vec![key(1), key(2)],
            segment: Segment::Infrastructure,
        }],
        last: true,
    }
}

#[test]
fn frames_round_trip() {
    let h = hello();
    assert_eq!(decode::<AgentMsg>(&encode(&h).expect("enc")), Ok(h));
    let r = routes();
    assert_eq!(decode::<ControllerMsg>(&encode(&r).expect("enc")), Ok(r));
}

#[test]
fn truncated_and_trailing_frames_are_rejected() {
    let bytes = encode(&hello()).expect("enc");
    for cut in 0..bytes.len() {
        assert!(decode::<AgentMsg>(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(decode::<AgentMsg>(&long), Err(FrameError::Trailing(1)));
    assert!(matches!(
        decode::<AgentMsg>(&[0x7f]),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn version_is_readable_from_any_hello() {
    let bytes = encode(&hello()).expect("enc");
    assert_eq!(hello_version(&bytes), Some(crate::PROTOCOL_VERSION));
    // A future Hello: version 9, then fields this build does not know.
    let future = [0u8, 9, 0xff, 0xff, 0xff];
    assert_eq!(hello_version(&future), Some(9));
    assert!(decode::<AgentMsg>(&future).is_err());
    assert_eq!(
        hello_version(&encode(&AgentMsg::Ping(1)).expect("enc")),
        None
    );
}

#[test]
fn large_state_is_chunked_under_the_frame_limit() {
    let many: Vec<Route> = (0..5000u32)
        .map(|i| Route {
            upstreams: Vec::new(),
            prefix: IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                0x0a00_0000 + i,
            ))),
            via: vec![key(1), key(2), key(3)],
            segment: Segment::Intranet,
        })
        .collect();
    let frames = chunked(&many, &|routes, last| ControllerMsg::Routes {
        routes,
        last,
    })
    .expect("chunk");
    assert!(frames.len() > 1);
    let mut got = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        assert!(f.len() <= MAX_FRAME);
        let ControllerMsg::Routes { routes, last } = decode(f).expect("dec") else {
            panic!("not routes")
        };
        assert_eq!(last, i + 1 == frames.len());
        got.extend(routes);
    }
    assert_eq!(got, many);
}

/// The frames the chunking made before it measured lengths: encode the
/// whole chunk, halve it when too large. The measured chunking must give
/// exactly these bytes.
fn chunked_by_encoding<I: Clone + Serialize>(
    items: &[I],
    last: bool,
    make: &dyn Fn(Vec<I>, bool) -> ControllerMsg,
    out: &mut Vec<Vec<u8>>,
) {
    match encode(&make(items.to_vec(), last)) {
        Ok(frame) => out.push(frame),
        Err(FrameError::TooLarge(_)) if items.len() > 1 => {
            let (a, b) = items.split_at(items.len() / 2);
            chunked_by_encoding(a, false, make, out);
            chunked_by_encoding(b, last, make, out);
        }
        Err(e) => panic!("reference chunking failed: {e}"),
    }
}

#[test]
fn measured_chunking_gives_the_frames_of_encoding_every_half() {
    // Mixed IPv4/IPv6 prefixes and 1–5 hops: item lengths vary, and the
    // counts straddle the frame limit and the varint length steps.
    let route = |i: u32| Route {
        upstreams: Vec::new(),
        prefix: if i.is_multiple_of(3) {
            IpNet::from(std::net::IpAddr::from(std::net::Ipv6Addr::from(
                0xfd00_u128 << 112 | u128::from(i),
            )))
        } else {
            IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                0x0a00_0000 + i,
            )))
        },
        via: (0..=(i % 5))
            .map(|h| key(u8::try_from(h).unwrap_or(0)))
            .collect(),
        segment: Segment::Intranet,
    };
    for n in [0, 1, 127, 128, 400, 700, 701, 1000, 2000, 2047, 3000, 5000] {
        let many: Vec<Route> = (0..n).map(route).collect();
        let make = |routes, last| ControllerMsg::Routes { routes, last };
        let mut want = Vec::new();
        chunked_by_encoding(&many, true, &make, &mut want);
        assert_eq!(chunked(&many, &make).expect("chunk"), want, "{n} routes");
        let changes: Vec<RouteChange> = many.iter().cloned().map(RouteChange::Set).collect();
        let make = |c, _| ControllerMsg::RoutesDelta(c);
        let mut want = Vec::new();
        chunked_by_encoding(&changes, true, &make, &mut want);
        assert_eq!(
            chunked(&changes, &make).expect("chunk"),
            want,
            "{n} changes"
        );
    }
}

#[test]
fn noise_ik_handshake_authenticates_both_sides() {
    let (ctrl_priv, ctrl_pub) = generate_keypair().expect("kp");
    let (node_priv, node_pub) = generate_keypair().expect("kp");
    let (init, msg1) = Initiator::start(&node_priv, &ctrl_pub).expect("start");
    let (mut server, remote, msg2) = respond(&ctrl_priv, &msg1).expect("respond");
    assert_eq!(remote, node_pub);
    let mut client = init.finish(&msg2).expect("finish");
    let sealed = client.seal(b"hi").expect("seal");
    assert_eq!(server.open(&sealed).expect("open"), b"hi");
    let back = server.seal(b"ho").expect("seal");
    assert_eq!(client.open(&back).expect("open"), b"ho");
    let mut tampered = client.seal(b"x").expect("seal");
    tampered[0] ^= 1;
    assert!(server.open(&tampered).is_err());
}

#[test]
fn wrong_pinned_key_fails_the_handshake() {
    let (ctrl_priv, _) = generate_keypair().expect("kp");
    let (_, other_pub) = generate_keypair().expect("kp");
    let (node_priv, _) = generate_keypair().expect("kp");
    let (_, msg1) = Initiator::start(&node_priv, &other_pub).expect("start");
    assert!(respond(&ctrl_priv, &msg1).is_err());
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<AgentMsg>(&bytes);
        let _ = decode::<ControllerMsg>(&bytes);
        let _ = hello_version(&bytes);
    }

    #[test]
    fn reports_round_trip(rtt in any::<u32>(), loss in any::<u32>(), up in any::<bool>(), k in any::<[u8; 32]>()) {
        let msg = AgentMsg::Report(Report {
            links: vec![LinkMeasurement { peer: PublicKeyBytes(k), rtt_us: rtt, loss_ppm: loss, up }],
            candidates: vec![Candidate { peer: PublicKeyBytes(k), endpoint: None }],
        });
        prop_assert_eq!(decode::<AgentMsg>(&encode(&msg).expect("enc")), Ok(msg));
    }
}

#[test]
fn messages_travel_behind_a_big_endian_length() {
    assert_eq!(
        length_prefixed(b"abc").expect("small"),
        vec![0, 3, b'a', b'b', b'c']
    );
    assert_eq!(length_prefixed(&[]).expect("empty"), vec![0, 0]);
    let too_big = vec![0u8; 65_536];
    assert!(matches!(
        length_prefixed(&too_big),
        Err(FrameError::TooLarge(65_536))
    ));
}

fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[3; 32])
}

fn signed_credential() -> SignedCredential {
    let node_key = key(7);
    crate::credential::Credential {
        node_key,
        node_id: NodeId::of(&node_key),
        addresses: vec!["fd00::7/128".parse().expect("net")],
        roles: Roles::default(),
        prefixes: vec![],
        issued_unix_s: 1_000,
        expires_unix_s: 2_000,
    }
    .sign(&signing_key())
    .expect("sign")
}

/// A list of `pages` signed pages (20 entries each, the page maximum).
fn revocation_pages(pages: usize) -> Vec<SignedRevocationPage> {
    let revoked: Vec<crate::credential::Revoked> = (0..pages * crate::credential::MAX_PAGE_ENTRIES)
        .map(|i| crate::credential::Revoked {
            node_key: PublicKeyBytes([u8::try_from(i % 251).expect("small"); 32]),
            until_unix_s: u64::try_from(i).expect("small"),
        })
        .collect();
    crate::credential::RevocationPage::paginate(9, 1_000, &revoked)
        .expect("paginate")
        .iter()
        .map(|p| p.sign(&signing_key()).expect("sign"))
        .collect()
}

#[test]
fn v5_frames_round_trip() {
    let welcome = ControllerMsg::Welcome(Welcome {
        node_id: NodeId::of(&key(7)),
        addresses: vec!["fd00::7/128".parse().expect("net")],
        mesh_prefixes: vec!["fd00::/48".parse().expect("net")],
        client_prefixes: vec![],
        signing_key: SigningKeyBytes::of(&signing_key()),
    });
    let credential = ControllerMsg::Credential(signed_credential());
    let revocations = ControllerMsg::Revocations(revocation_pages(3));
    for msg in [welcome, credential, revocations] {
        let bytes = encode(&msg).expect("enc");
        assert_eq!(decode::<ControllerMsg>(&bytes), Ok(msg.clone()));
        for cut in 0..bytes.len() {
            assert!(
                decode::<ControllerMsg>(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode::<ControllerMsg>(&long), Err(FrameError::Trailing(1)));
    }
}

#[test]
fn a_forged_credential_decodes_as_a_frame_but_does_not_verify() {
    let mut forged = signed_credential();
    forged.body[3] ^= 0x40;
    let bytes = encode(&ControllerMsg::Credential(forged)).expect("enc");
    let Ok(ControllerMsg::Credential(back)) = decode::<ControllerMsg>(&bytes) else {
        panic!("not a credential frame");
    };
    assert!(
        back.verify(&SigningKeyBytes::of(&signing_key()), 1_500)
            .is_err()
    );
}

#[test]
fn the_longest_revocation_list_goes_in_frames_of_at_most_16_pages() {
    let pages = revocation_pages(usize::from(crate::credential::MAX_PAGES));
    let frames =
        encode_controller_frames(&ControllerMsg::Revocations(pages.clone())).expect("frames");
    assert_eq!(frames.len(), 4);
    let mut got = Vec::new();
    for frame in &frames {
        assert!(frame.len() <= MAX_FRAME);
        let Ok(ControllerMsg::Revocations(chunk)) = decode::<ControllerMsg>(frame) else {
            panic!("not revocations");
        };
        assert!(chunk.len() <= MAX_REVOCATION_PAGES_PER_FRAME);
        got.extend(chunk);
    }
    assert_eq!(got, pages);
    // A short list is one frame.
    let one =
        encode_controller_frames(&ControllerMsg::Revocations(revocation_pages(1))).expect("frames");
    assert_eq!(one.len(), 1);
}

#[test]
fn the_longest_control_exit_list_fits_a_small_frame() {
    let exits: Vec<SocketAddr> = (0..MAX_CONTROL_EXITS)
        .map(|i| {
            SocketAddr::new(
                format!("fd00:1:ffff:ffff:ffff:ffff:ffff:{i:x}")
                    .parse()
                    .expect("ip"),
                crate::discovery::CONTROL_RELAY_PORT,
            )
        })
        .collect();
    let msg = ControllerMsg::ControlExits(exits);
    let bytes = encode(&msg).expect("encode");
    assert!(bytes.len() < 400, "{} bytes", bytes.len());
    assert_eq!(decode::<ControllerMsg>(&bytes), Ok(msg));
}

#[test]
fn exit_gateway_round_trips() {
    for msg in [
        ControllerMsg::ExitGateway(Some(PublicKeyBytes([7; 32]))),
        ControllerMsg::ExitGateway(None),
    ] {
        let bytes = encode(&msg).expect("encode");
        assert_eq!(decode::<ControllerMsg>(&bytes), Ok(msg));
    }
}

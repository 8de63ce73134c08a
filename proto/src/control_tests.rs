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

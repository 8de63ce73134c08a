//! Unit tests of the rtnetlink wire format: requests byte for byte,
//! parsing what the kernel sends, and malformed input.

use super::*;

fn only_message(bytes: &[u8]) -> Message<'_> {
    let all: Vec<Message<'_>> = messages(bytes).collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all[0]
}

#[test]
fn request_header_has_length_type_flags_and_sequence() {
    let bytes = delete_link(7).encode(42);
    assert_eq!(bytes.len(), 32);
    let message = only_message(&bytes);
    assert_eq!(message.kind, RTM_DELLINK);
    assert_eq!(message.flags, NLM_F_REQUEST | NLM_F_ACK);
    assert_eq!(message.seq, 42);
    assert_eq!(u32_at(message.payload, 4), Some(7));
}

#[test]
fn attributes_are_padded_and_read_back() {
    let bytes = get_link_by_name("eth10").encode(1);
    let message = only_message(&bytes);
    // 16 header + 16 ifinfomsg + 4 attribute header + "eth10\0" padded to 8.
    assert_eq!(bytes.len(), 16 + 16 + 4 + 8);
    let attributes: Vec<(u16, &[u8])> = attributes(message.payload, IFINFOMSG_LEN).collect();
    assert_eq!(attributes, vec![(IFLA_IFNAME, &b"eth10\0"[..])]);
}

#[test]
fn set_link_carries_mtu_and_the_up_flag_in_the_change_mask() {
    let bytes = set_link(3, Some(1420), Some(true)).encode(1);
    let message = only_message(&bytes);
    assert_eq!(message.kind, RTM_SETLINK);
    let link = Link::parse(message.payload).unwrap_or_default();
    assert_eq!(link.index, 3);
    assert_eq!(link.flags, IFF_UP);
    assert_eq!(link.mtu, Some(1420));
    assert_eq!(u32_at(message.payload, 12), Some(IFF_UP));

    let down = set_link(3, None, Some(false)).encode(1);
    let message = only_message(&down);
    assert_eq!(u32_at(message.payload, 8), Some(0));
    assert_eq!(u32_at(message.payload, 12), Some(IFF_UP));
}

#[test]
fn several_messages_in_one_datagram_and_truncation_stops() {
    let mut datagram = delete_link(1).encode(1);
    datagram.extend(delete_link(2).encode(2));
    let seqs: Vec<u32> = messages(&datagram).map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2]);
    datagram.truncate(datagram.len() - 1);
    assert_eq!(messages(&datagram).count(), 1);
    assert_eq!(messages(&[0xff; 3]).count(), 0);
    // A length below the header's own never loops.
    assert_eq!(messages(&[0; 32]).count(), 0);
}

#[test]
fn bad_attribute_lengths_end_the_attributes() {
    let mut payload = vec![0; IFINFOMSG_LEN];
    payload.extend_from_slice(&200u16.to_ne_bytes());
    payload.extend_from_slice(&IFLA_MTU.to_ne_bytes());
    assert_eq!(attributes(&payload, IFINFOMSG_LEN).count(), 0);
    payload[IFINFOMSG_LEN..IFINFOMSG_LEN + 2].copy_from_slice(&2u16.to_ne_bytes());
    assert_eq!(attributes(&payload, IFINFOMSG_LEN).count(), 0);
    assert_eq!(Link::parse(&[0; 3]), None);
}

#[test]
fn links_round_trip() {
    let link = Link {
        index: 9,
        flags: IFF_UP | IFF_LOWER_UP,
        name: Some("wlan0".into()),
        operstate: Some(IF_OPER_DORMANT),
        mtu: Some(1500),
    };
    assert_eq!(Link::parse(&link.encode()), Some(link));
}

#[test]
fn ipv4_address_has_local_peer_and_broadcast() {
    let bytes = add_address(4, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 24, false).encode(1);
    let message = only_message(&bytes);
    assert_eq!(message.kind, RTM_NEWADDR);
    assert_eq!(
        message.flags,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
    );
    let address = Address::parse(message.payload).unwrap_or_default();
    assert_eq!(address.family, AF_INET);
    assert_eq!(address.prefix_len, 24);
    assert_eq!(address.index, 4);
    assert_eq!(address.local, Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))));
    let broadcast = attributes(message.payload, IFADDRMSG_LEN)
        .find(|(kind, _)| *kind == IFA_BROADCAST)
        .map(|(_, value)| value.to_vec());
    assert_eq!(broadcast, Some(vec![10, 1, 2, 255]));
}

#[test]
fn ipv6_address_can_skip_dad() {
    let ip: IpAddr = "fd99::1".parse().unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let bytes = add_address(4, ip, 64, true).encode(1);
    let message = only_message(&bytes);
    let address = Address::parse(message.payload).unwrap_or_default();
    assert_eq!((address.family, address.address), (AF_INET6, Some(ip)));
    let flags = attributes(message.payload, IFADDRMSG_LEN)
        .find(|(kind, _)| *kind == IFA_FLAGS)
        .and_then(|(_, value)| u32_at(value, 0));
    assert_eq!(flags, Some(IFA_F_NODAD));
    let removal = delete_address(4, ip, 64).encode(2);
    assert_eq!(only_message(&removal).kind, RTM_DELADDR);
}

#[test]
fn routes_round_trip_and_big_tables_go_in_an_attribute() {
    let mut route = RouteMessage::new(IpAddr::V4(Ipv4Addr::new(10, 99, 0, 0)), 16);
    route.oif = Some(7);
    route.priority = Some(1024);
    route.protocol = 99;
    assert_eq!(RouteMessage::parse(&route.payload()), Some(route));
    assert_eq!(route.payload()[4], 254);

    route.table = 1000;
    let payload = route.payload();
    assert_eq!(payload[4], 0);
    assert_eq!(RouteMessage::parse(&payload), Some(route));
}

#[test]
fn route_requests_carry_their_flags() {
    let route = RouteMessage::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0);
    let add = route.add(false).encode(1);
    assert_eq!(
        only_message(&add).flags,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    );
    let replace = route.add(true).encode(1);
    assert_eq!(
        only_message(&replace).flags,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    );
    let dump = RouteMessage::dump(AF_INET6).encode(1);
    assert_eq!(only_message(&dump).flags, NLM_F_REQUEST | NLM_F_DUMP);
    let lookup = RouteMessage::lookup(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))).encode(1);
    let message = only_message(&lookup);
    assert_eq!(message.flags, NLM_F_REQUEST);
    let parsed = RouteMessage::parse(message.payload);
    assert_eq!(
        parsed.map(|route| (route.destination_prefix_len, route.destination)),
        Some((32, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))))
    );
}

#[test]
fn rules_carry_interface_priority_and_protocol() {
    let bytes = add_rule(AF_INET6, "wlan1", 72, 7200, 99).encode(1);
    let message = only_message(&bytes);
    assert_eq!(message.kind, RTM_NEWRULE);
    assert_eq!(message.payload[0], AF_INET6);
    assert_eq!(message.payload[4], 72);
    assert_eq!(message.payload[7], FR_ACT_TO_TBL);
    assert_eq!(rule_protocol(message.payload), Some(99));
    let kinds: Vec<u16> = attributes(message.payload, FIB_RULE_HDR_LEN)
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(kinds, vec![FRA_IIFNAME, FRA_PRIORITY, FRA_PROTOCOL]);
    assert_eq!(rule_protocol(&message.payload[..4]), None);

    let echoed = echo(RTM_DELRULE, message.payload).encode(5);
    let removal = only_message(&echoed);
    assert_eq!(removal.kind, RTM_DELRULE);
    assert_eq!(removal.payload, message.payload);
}

#[test]
fn error_messages_carry_the_errno() {
    let mut payload = (-17i32).to_ne_bytes().to_vec();
    payload.extend_from_slice(&delete_link(1).encode(3)[..16]);
    let bytes = Request::new(NLMSG_ERROR, 0, &payload).encode(3);
    assert_eq!(only_message(&bytes).error_code(), Some(-17));
}

proptest::proptest! {
    /// Whatever the socket delivers, reading it never panics and never
    /// reads past the datagram: every payload and attribute is a slice of
    /// it. A valid header around random bytes reaches the parsers; the
    /// random tail exercises the framing.
    #[test]
    fn any_datagram_parses_without_panic(
        kind in proptest::num::u16::ANY,
        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        tail in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
    ) {
        let mut datagram = Request::new(kind, 0, &payload).encode(1);
        datagram.extend_from_slice(&tail);
        let mut total = 0;
        for message in messages(&datagram) {
            total += message.payload.len();
            let _ = message.error_code();
            let _ = Link::parse(message.payload);
            let _ = Address::parse(message.payload);
            let _ = RouteMessage::parse(message.payload);
            let _ = rule_protocol(message.payload);
            for header_len in [IFINFOMSG_LEN, IFADDRMSG_LEN, RTMSG_LEN, FIB_RULE_HDR_LEN] {
                for (_, value) in attributes(message.payload, header_len) {
                    proptest::prop_assert!(value.len() <= message.payload.len());
                }
            }
        }
        proptest::prop_assert!(total <= datagram.len());
    }

    /// A route survives the trip through the bytes unchanged, whatever its
    /// table (header or `RTA_TABLE`).
    #[test]
    fn routes_round_trip_through_the_wire(
        v4 in proptest::option::of(proptest::num::u32::ANY),
        v6 in proptest::num::u128::ANY,
        prefix_len in 0u8..=128,
        table in proptest::num::u32::ANY,
        oif in proptest::option::of(proptest::num::u32::ANY),
        priority in proptest::option::of(proptest::num::u32::ANY),
    ) {
        let (destination, prefix_len) = match v4 {
            Some(v4) => (IpAddr::V4(Ipv4Addr::from(v4)), prefix_len % 33),
            None => (IpAddr::V6(Ipv6Addr::from(v6)), prefix_len),
        };
        let mut route = RouteMessage::new(destination, prefix_len);
        route.table = table;
        route.oif = oif;
        route.priority = priority;
        proptest::prop_assert_eq!(RouteMessage::parse(&route.payload()), Some(route));
    }
}

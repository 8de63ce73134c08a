//! The rtnetlink messages the agent sends and reads, byte for byte: pure
//! functions over buffers, unit-tested without privileges.
//!
//! Hand-written instead of `netlink-packet-route`, whose model of every
//! rtnetlink message and attribute was ≈ 440 KiB of the router binary
//! (docs/decisions.md, "Hand-written rtnetlink"). The agent needs links
//! (set MTU and up, delete, read flags, name and operstate), addresses,
//! routes and policy rules, and only the few attributes below; everything
//! else in a message the kernel sends is skipped.
//!
//! Layout (`linux/netlink.h`, `linux/rtnetlink.h`): a message is a 16-byte
//! header (length, type, flags, sequence, port) followed by a fixed family
//! header (`ifinfomsg`, `ifaddrmsg`, `rtmsg`, `fib_rule_hdr`) and then
//! type-length-value attributes, each padded to 4 bytes. Native byte order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Message types (`NLMSG_*`, `RTM_*`).
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLMSG_OVERRUN: u16 = 4;
pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
pub(crate) const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_SETLINK: u16 = 19;
pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_DELADDR: u16 = 21;
pub(crate) const RTM_GETADDR: u16 = 22;
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_DELROUTE: u16 = 25;
pub(crate) const RTM_GETROUTE: u16 = 26;
pub(crate) const RTM_NEWRULE: u16 = 32;
pub(crate) const RTM_DELRULE: u16 = 33;
pub(crate) const RTM_GETRULE: u16 = 34;

/// Header flags (`NLM_F_*`).
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_MULTI: u16 = 0x2;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_REPLACE: u16 = 0x100;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;

/// Interface flags (`IFF_*`) and link attributes (`IFLA_*`).
pub(crate) const IFF_UP: u32 = 0x1;
pub(crate) const IFF_LOWER_UP: u32 = 0x1_0000;
const IFLA_MTU: u16 = 4;
const IFLA_IFNAME: u16 = 3;
const IFLA_OPERSTATE: u16 = 16;
/// RFC 2863 operational states (`IF_OPER_*`) the carrier logic looks at.
pub(crate) const IF_OPER_UNKNOWN: u8 = 0;
#[cfg(test)]
pub(crate) const IF_OPER_DOWN: u8 = 2;
#[cfg(test)]
pub(crate) const IF_OPER_LOWERLAYERDOWN: u8 = 3;
#[cfg(test)]
pub(crate) const IF_OPER_DORMANT: u8 = 5;
pub(crate) const IF_OPER_UP: u8 = 6;

/// Address attributes (`IFA_*`) and flags.
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x2;

/// Route attributes (`RTA_*`) and header values.
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
pub(crate) const RT_TABLE_MAIN: u32 = 254;
pub(crate) const RTN_UNICAST: u8 = 1;
pub(crate) const RT_SCOPE_UNIVERSE: u8 = 0;
pub(crate) const RT_SCOPE_LINK: u8 = 253;
pub(crate) const RT_SCOPE_NOWHERE: u8 = 255;
/// `ip route add` without `proto`: what rtnetlink sent as its default.
pub(crate) const RTPROT_STATIC: u8 = 4;

/// Rule attributes (`FRA_*`) and the one action the agent uses.
const FRA_IIFNAME: u16 = 3;
const FRA_PRIORITY: u16 = 6;
const FRA_TABLE: u16 = 15;
const FRA_PROTOCOL: u16 = 21;
pub(crate) const FR_ACT_TO_TBL: u8 = 1;

/// Address families (`AF_*`).
pub(crate) const AF_UNSPEC: u8 = 0;
pub(crate) const AF_INET: u8 = 2;
pub(crate) const AF_INET6: u8 = 10;

const HEADER_LEN: usize = 16;
/// Attributes' type field carries two flag bits (nested, byte order).
const NLA_TYPE_MASK: u16 = 0x3fff;

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(buf: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// A request being built: header, family header, attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    bytes: Vec<u8>,
}

impl Request {
    /// A message of `kind` with `flags` (`NLM_F_REQUEST` is always added)
    /// and `family_header` as the fixed part of the payload.
    pub(crate) fn new(kind: u16, flags: u16, family_header: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(family_header);
        bytes.resize(align(bytes.len()), 0);
        Self { bytes }
    }

    /// Appends one attribute.
    pub(crate) fn attribute(mut self, kind: u16, value: &[u8]) -> Self {
        let len = 4 + value.len();
        // Attributes here are addresses, numbers and interface names: far
        // below the 64 KiB a length field can say.
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&len16.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        self.bytes.resize(align(self.bytes.len()), 0);
        self
    }

    pub(crate) fn attribute_u32(self, kind: u16, value: u32) -> Self {
        self.attribute(kind, &value.to_ne_bytes())
    }

    fn attribute_ip(self, kind: u16, ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(ip) => self.attribute(kind, &ip.octets()),
            IpAddr::V6(ip) => self.attribute(kind, &ip.octets()),
        }
    }

    /// The finished message with sequence number `seq`.
    pub(crate) fn encode(&self, seq: u32) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        bytes[0..4].copy_from_slice(&len.to_ne_bytes());
        bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
        bytes
    }
}

/// One message read from the kernel: type, flags, sequence number and the
/// payload after the 16-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub(crate) kind: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u32,
    pub(crate) payload: &'a [u8],
}

impl Message<'_> {
    /// For `NLMSG_ERROR`: 0 for an acknowledgement, else a negative errno.
    /// `None` if the payload is too short to say.
    pub(crate) fn error_code(&self) -> Option<i32> {
        i32_at(self.payload, 0)
    }
}

/// The messages of one datagram. A malformed length ends the iteration
/// (with everything before it returned): the kernel never sends one.
pub(crate) fn messages(datagram: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        let len = usize::try_from(u32_at(rest, 0)?).ok()?;
        if len < HEADER_LEN || len > rest.len() {
            return None;
        }
        let message = Message {
            kind: u16_at(rest, 4)?,
            flags: u16_at(rest, 6)?,
            seq: u32_at(rest, 8)?,
            payload: &rest[HEADER_LEN..len],
        };
        rest = rest.get(align(len)..).unwrap_or_default();
        Some(message)
    })
}

/// The attributes after a family header of `header_len` bytes, as
/// (type without flag bits, value).
pub(crate) fn attributes(payload: &[u8], header_len: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = payload.get(align(header_len)..).unwrap_or_default();
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(rest, 0)?);
        if len < 4 || len > rest.len() {
            return None;
        }
        let kind = u16_at(rest, 2)? & NLA_TYPE_MASK;
        let value = &rest[4..len];
        rest = rest.get(align(len)..).unwrap_or_default();
        Some((kind, value))
    })
}

fn ip_of(value: &[u8]) -> Option<IpAddr> {
    if let Ok(octets) = <[u8; 4]>::try_from(value) {
        Some(IpAddr::V4(Ipv4Addr::from(octets)))
    } else if let Ok(octets) = <[u8; 16]>::try_from(value) {
        Some(IpAddr::V6(Ipv6Addr::from(octets)))
    } else {
        None
    }
}

fn family_of(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { AF_INET } else { AF_INET6 }
}

// ---- links ----

const IFINFOMSG_LEN: usize = 16;

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut header = [0; IFINFOMSG_LEN];
    header[4..8].copy_from_slice(&index.to_ne_bytes());
    header[8..12].copy_from_slice(&flags.to_ne_bytes());
    header[12..16].copy_from_slice(&change.to_ne_bytes());
    header
}

/// `RTM_SETLINK`: sets the MTU (if given) and the up flag (if given).
pub(crate) fn set_link(index: u32, mtu: Option<u32>, up: Option<bool>) -> Request {
    let (flags, change) = match up {
        Some(true) => (IFF_UP, IFF_UP),
        Some(false) => (0, IFF_UP),
        None => (0, 0),
    };
    let request = Request::new(
        RTM_SETLINK,
        NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE,
        &ifinfomsg(index, flags, change),
    );
    match mtu {
        Some(mtu) => request.attribute_u32(IFLA_MTU, mtu),
        None => request,
    }
}

/// `RTM_DELLINK` of the interface `index`.
pub(crate) fn delete_link(index: u32) -> Request {
    Request::new(RTM_DELLINK, NLM_F_ACK, &ifinfomsg(index, 0, 0))
}

/// `RTM_GETLINK` of every interface.
pub(crate) fn dump_links() -> Request {
    Request::new(RTM_GETLINK, NLM_F_DUMP, &ifinfomsg(0, 0, 0))
}

/// `RTM_GETLINK` of one interface by name (the kernel answers `ENODEV`
/// when there is none).
pub(crate) fn get_link_by_name(name: &str) -> Request {
    let mut value = name.as_bytes().to_vec();
    value.push(0);
    Request::new(RTM_GETLINK, 0, &ifinfomsg(0, 0, 0)).attribute(IFLA_IFNAME, &value)
}

/// What the agent reads of an `RTM_NEWLINK`/`RTM_DELLINK`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) index: u32,
    /// `IFF_*` flags.
    pub(crate) flags: u32,
    pub(crate) name: Option<String>,
    /// `IF_OPER_*`, where the kernel sends one.
    pub(crate) operstate: Option<u8>,
    pub(crate) mtu: Option<u32>,
}

impl Link {
    pub(crate) fn parse(payload: &[u8]) -> Option<Self> {
        let mut link = Self {
            index: u32_at(payload, 4)?,
            flags: u32_at(payload, 8)?,
            ..Self::default()
        };
        for (kind, value) in attributes(payload, IFINFOMSG_LEN) {
            match kind {
                IFLA_IFNAME => {
                    let name = value.split(|b| *b == 0).next().unwrap_or_default();
                    link.name = Some(String::from_utf8_lossy(name).into_owned());
                }
                IFLA_OPERSTATE => link.operstate = value.first().copied(),
                IFLA_MTU => link.mtu = u32_at(value, 0),
                _ => {}
            }
        }
        Some(link)
    }

    /// The message the kernel would send for this link (for tests).
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut request = Request::new(RTM_NEWLINK, 0, &ifinfomsg(self.index, self.flags, 0));
        if let Some(name) = &self.name {
            let mut value = name.as_bytes().to_vec();
            value.push(0);
            request = request.attribute(IFLA_IFNAME, &value);
        }
        if let Some(state) = self.operstate {
            request = request.attribute(IFLA_OPERSTATE, &[state]);
        }
        if let Some(mtu) = self.mtu {
            request = request.attribute_u32(IFLA_MTU, mtu);
        }
        request.encode(0)[HEADER_LEN..].to_vec()
    }
}

// ---- addresses ----

const IFADDRMSG_LEN: usize = 8;

fn ifaddrmsg(family: u8, prefix_len: u8, index: u32) -> [u8; IFADDRMSG_LEN] {
    let mut header = [0; IFADDRMSG_LEN];
    header[0] = family;
    header[1] = prefix_len;
    header[4..8].copy_from_slice(&index.to_ne_bytes());
    header
}

/// An address message as `ip addr add|del ADDRESS/LEN dev INDEX` sends it:
/// IPv4 with local, peer and broadcast address (below /31), IPv6 with
/// both.
fn address_request(kind: u16, flags: u16, index: u32, ip: IpAddr, prefix_len: u8) -> Request {
    let request = Request::new(kind, flags, &ifaddrmsg(family_of(ip), prefix_len, index))
        .attribute_ip(IFA_ADDRESS, ip)
        .attribute_ip(IFA_LOCAL, ip);
    match ip {
        IpAddr::V4(v4) if prefix_len < 31 => {
            let broadcast = u32::from(v4) | (u32::MAX >> u32::from(prefix_len));
            request.attribute(IFA_BROADCAST, &Ipv4Addr::from(broadcast).octets())
        }
        _ => request,
    }
}

/// `RTM_NEWADDR`; fails with `EEXIST` if the address is there. With
/// `no_dad`, an IPv6 address is usable at once instead of "tentative".
pub(crate) fn add_address(index: u32, ip: IpAddr, prefix_len: u8, no_dad: bool) -> Request {
    let request = address_request(
        RTM_NEWADDR,
        NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE,
        index,
        ip,
        prefix_len,
    );
    if no_dad {
        request.attribute_u32(IFA_FLAGS, IFA_F_NODAD)
    } else {
        request
    }
}

/// `RTM_DELADDR`.
pub(crate) fn delete_address(index: u32, ip: IpAddr, prefix_len: u8) -> Request {
    address_request(RTM_DELADDR, NLM_F_ACK, index, ip, prefix_len)
}

/// `RTM_GETADDR` of every address (all families, all interfaces).
pub(crate) fn dump_addresses() -> Request {
    Request::new(RTM_GETADDR, NLM_F_DUMP, &ifaddrmsg(AF_UNSPEC, 0, 0))
}

/// What the agent reads of an `RTM_NEWADDR`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Address {
    pub(crate) family: u8,
    pub(crate) prefix_len: u8,
    pub(crate) index: u32,
    /// `IFA_LOCAL`: the interface's own address (IPv4).
    pub(crate) local: Option<IpAddr>,
    /// `IFA_ADDRESS`: the peer on point-to-point IPv4 links; the address
    /// itself for IPv6.
    pub(crate) address: Option<IpAddr>,
}

impl Address {
    pub(crate) fn parse(payload: &[u8]) -> Option<Self> {
        let mut address = Self {
            family: *payload.first()?,
            prefix_len: *payload.get(1)?,
            index: u32_at(payload, 4)?,
            ..Self::default()
        };
        for (kind, value) in attributes(payload, IFADDRMSG_LEN) {
            match kind {
                IFA_LOCAL => address.local = ip_of(value),
                IFA_ADDRESS => address.address = ip_of(value),
                _ => {}
            }
        }
        Some(address)
    }
}

// ---- routes ----

const RTMSG_LEN: usize = 12;

/// A route message, to send or as read: the `rtmsg` header's fields and the
/// attributes the agent uses. `table` is the whole table number (from
/// `RTA_TABLE` where the kernel sends it, the header otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteMessage {
    pub(crate) family: u8,
    pub(crate) destination_prefix_len: u8,
    pub(crate) table: u32,
    pub(crate) protocol: u8,
    pub(crate) scope: u8,
    pub(crate) kind: u8,
    pub(crate) destination: Option<IpAddr>,
    pub(crate) oif: Option<u32>,
    pub(crate) priority: Option<u32>,
}

impl RouteMessage {
    /// A unicast route of the main table to `destination/prefix_len`, with
    /// `ip route`'s defaults (static, universe scope), no device yet.
    pub(crate) fn new(destination: IpAddr, prefix_len: u8) -> Self {
        Self {
            family: family_of(destination),
            destination_prefix_len: prefix_len,
            table: RT_TABLE_MAIN,
            protocol: RTPROT_STATIC,
            scope: RT_SCOPE_UNIVERSE,
            kind: RTN_UNICAST,
            destination: Some(destination),
            oif: None,
            priority: None,
        }
    }

    /// The `rtmsg` header and attributes, as the kernel would send them
    /// back (for tests).
    #[cfg(test)]
    pub(crate) fn payload(&self) -> Vec<u8> {
        self.request(0, 0).encode(0)[HEADER_LEN..].to_vec()
    }

    /// A request of `kind` with this route. Tables above 255 go in
    /// `RTA_TABLE` (the header cannot hold them), as `ip route` does.
    fn request(&self, kind: u16, flags: u16) -> Request {
        let mut header = [0; RTMSG_LEN];
        header[0] = self.family;
        header[1] = self.destination_prefix_len;
        header[4] = u8::try_from(self.table).unwrap_or(0);
        header[5] = self.protocol;
        header[6] = self.scope;
        header[7] = self.kind;
        let mut request = Request::new(kind, flags, &header);
        if self.table > 255 {
            request = request.attribute_u32(RTA_TABLE, self.table);
        }
        if let Some(destination) = self.destination {
            request = request.attribute_ip(RTA_DST, destination);
        }
        if let Some(oif) = self.oif {
            request = request.attribute_u32(RTA_OIF, oif);
        }
        if let Some(priority) = self.priority {
            request = request.attribute_u32(RTA_PRIORITY, priority);
        }
        request
    }

    /// `RTM_NEWROUTE`: fails with `EEXIST` for an existing route, or with
    /// `replace` replaces it.
    pub(crate) fn add(&self, replace: bool) -> Request {
        let exclusive = if replace { NLM_F_REPLACE } else { NLM_F_EXCL };
        self.request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | exclusive)
    }

    /// `RTM_DELROUTE`.
    pub(crate) fn delete(&self) -> Request {
        self.request(RTM_DELROUTE, NLM_F_ACK)
    }

    /// `RTM_GETROUTE` without dump flag: the kernel answers with the one
    /// route it would use for `destination` (policy rules included).
    pub(crate) fn lookup(destination: IpAddr) -> Request {
        let prefix_len = if destination.is_ipv4() { 32 } else { 128 };
        Self::new(destination, prefix_len).request(RTM_GETROUTE, 0)
    }

    /// `RTM_GETROUTE` of every route of one family (`AF_INET`/`AF_INET6`).
    pub(crate) fn dump(family: u8) -> Request {
        let mut header = [0; RTMSG_LEN];
        header[0] = family;
        Request::new(RTM_GETROUTE, NLM_F_DUMP, &header)
    }

    pub(crate) fn parse(payload: &[u8]) -> Option<Self> {
        let header = payload.get(..RTMSG_LEN)?;
        let mut message = Self {
            family: header[0],
            destination_prefix_len: header[1],
            table: u32::from(header[4]),
            protocol: header[5],
            scope: header[6],
            kind: header[7],
            destination: None,
            oif: None,
            priority: None,
        };
        for (kind, value) in attributes(payload, RTMSG_LEN) {
            match kind {
                RTA_DST => message.destination = ip_of(value),
                RTA_OIF => message.oif = u32_at(value, 0),
                RTA_PRIORITY => message.priority = u32_at(value, 0),
                RTA_TABLE => message.table = u32_at(value, 0).unwrap_or(message.table),
                _ => {}
            }
        }
        Some(message)
    }
}

// ---- policy rules ----

const FIB_RULE_HDR_LEN: usize = 12;

/// `RTM_NEWRULE` `iif INTERFACE lookup TABLE priority PRIORITY proto
/// PROTOCOL` for one family; fails with `EEXIST` if it is there.
pub(crate) fn add_rule(
    family: u8,
    input_interface: &str,
    table: u32,
    priority: u32,
    protocol: u8,
) -> Request {
    let mut header = [0; FIB_RULE_HDR_LEN];
    header[0] = family;
    header[4] = u8::try_from(table).unwrap_or(0);
    header[7] = FR_ACT_TO_TBL;
    let mut name = input_interface.as_bytes().to_vec();
    name.push(0);
    let request = Request::new(RTM_NEWRULE, NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE, &header)
        .attribute(FRA_IIFNAME, &name)
        .attribute_u32(FRA_PRIORITY, priority)
        .attribute(FRA_PROTOCOL, &[protocol]);
    if table > 255 {
        request.attribute_u32(FRA_TABLE, table)
    } else {
        request
    }
}

/// `RTM_GETRULE` of every rule of one family.
pub(crate) fn dump_rules(family: u8) -> Request {
    let mut header = [0; FIB_RULE_HDR_LEN];
    header[0] = family;
    Request::new(RTM_GETRULE, NLM_F_DUMP, &header)
}

/// The `FRA_PROTOCOL` of a rule as dumped, if it has one.
pub(crate) fn rule_protocol(payload: &[u8]) -> Option<u8> {
    if payload.len() < FIB_RULE_HDR_LEN {
        return None;
    }
    attributes(payload, FIB_RULE_HDR_LEN)
        .find(|(kind, _)| *kind == FRA_PROTOCOL)
        .and_then(|(_, value)| value.first().copied())
}

/// A request of `kind` whose payload is `payload` as the kernel sent it:
/// deleting a dumped route or rule with all its attributes hits exactly it.
pub(crate) fn echo(kind: u16, payload: &[u8]) -> Request {
    Request::new(kind, NLM_F_ACK, payload)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;

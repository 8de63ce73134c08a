//! The control channel between an agent and the controller (`docs/protocol.md`).
//!
//! The agent opens a TCP connection to the controller and runs a Noise IK
//! handshake (`Noise_IK_25519_ChaChaPoly_BLAKE2s`) as initiator: its static
//! key is its WireGuard key, the controller's static key is pinned in the
//! agent's config. After the two handshake messages, every message on the
//! wire is a 2-byte big-endian length followed by one Noise transport message,
//! whose plaintext is exactly one postcard-encoded frame: [`AgentMsg`] from
//! agent to controller, [`ControllerMsg`] the other way.
//!
//! The first frame the agent sends is [`AgentMsg::Hello`]; its first field is
//! the protocol version, so [`hello_version`] can read the version even from
//! a Hello whose remaining fields a newer agent shaped differently.
//!
//! Decoding is strict: trailing bytes, truncation, unknown variants and
//! invalid prefixes are errors, never panics. This module does no I/O; the
//! agent's `controlplane` and the controller's server move the bytes.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::api::DownCause;
pub use crate::segment::Segment;
pub use crate::telemetry::{Location, NodeInfo, STATISTICS_INTERVAL_S, Statistics};

use crate::credential::{SignedCredential, SignedRevocationPage, SigningKeyBytes};
pub use crate::roles::Roles;
use crate::{NodeId, PublicKeyBytes};

/// The Noise pattern of the control channel.
pub const NOISE_PATTERN: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// Bound into the handshake hash, so a handshake meant for another protocol
/// (or another major version of this one) never completes.
pub const NOISE_PROLOGUE: &[u8] = b"freimesh control channel";
/// The largest Noise message (and so the largest length prefix) there is.
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// ChaChaPoly's tag on every transport message.
const TAG_LEN: usize = 16;
/// The largest plaintext frame that fits one transport message. Full state
/// larger than this is sent as several frames (`last: false` on all but the
/// final one).
pub const MAX_FRAME: usize = MAX_NOISE_MESSAGE - TAG_LEN;

/// Why a frame or handshake was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("frame has {0} trailing bytes")]
    Trailing(usize),
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("noise: {0}")]
    Noise(String),
}

/// `message` behind its 2-byte big-endian length, in one buffer for a
/// single write: how every message travels on the control channel, the
/// Noise handshake included.
pub fn length_prefixed(message: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = u16::try_from(message.len()).map_err(|_| FrameError::TooLarge(message.len()))?;
    let mut buf = Vec::with_capacity(message.len() + 2);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(message);
    Ok(buf)
}

/// Frames the agent sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentMsg {
    /// The first frame of every connection.
    Hello(Hello),
    /// Measurements and candidate neighbours; sent whenever they change.
    Report(Report),
    Ping(u64),
    Pong(u64),
    /// Failovers the agent made on its own, sent as they happen (v3).
    Events(Vec<LinkEvent>),
    /// Byte counters per link, sent every [`TRAFFIC_INTERVAL_S`] (v3).
    Traffic(Vec<LinkTraffic>),
    /// A gateway's uplink check (against the far side, not the tunnel)
    /// changed, and once after every Welcome (v4).
    Uplink {
        up: bool,
    },
    /// How many public Wi-Fi clients hold a lease on this node: the only
    /// client information that leaves a router (v4).
    Clients {
        count: u32,
    },
    /// What the router is and where it stands: after every Welcome and
    /// whenever it changes (v5).
    NodeInfo(NodeInfo),
    /// How the router is doing, every [`STATISTICS_INTERVAL_S`] (v5).
    Statistics(Statistics),
}

/// How often an agent reports its per-link byte counters.
pub const TRAFFIC_INTERVAL_S: u64 = 10;

/// A link the agent took down, and what its local repair did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEvent {
    pub peer: PublicKeyBytes,
    pub cause: DownCause,
    /// From the last sign of life to the decision.
    pub detection_ms: u32,
    /// How long switching the forwarding table took.
    pub switch_us: u32,
    /// Prefixes moved to an alternate next hop.
    pub rerouted: u32,
    /// Prefixes left without a live path.
    pub lost: u32,
    /// How long before sending this the event happened (events wait while
    /// the controller is unreachable).
    pub age_ms: u32,
}

/// Bytes through one link since the agent started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTraffic {
    pub peer: PublicKeyBytes,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
}

/// Who the agent is and what it wants. `version` must stay the first field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    /// A one-time join token; `None` for an already enrolled node.
    pub join_token: Option<String>,
    pub hostname: String,
    /// Underlay endpoints the agent's WireGuard socket listens on.
    pub endpoints: Vec<SocketAddr>,
    /// Prefixes (e.g. a building LAN) the node wants to announce; each must
    /// have been approved for it by the operator.
    pub prefixes: Vec<IpNet>,
    /// Specific overlay addresses the node asks for (e.g. kept from static
    /// mode); empty = let the controller allocate. Honoured only at
    /// enrolment; each must lie in the mesh pools and be free.
    pub want_addresses: Vec<IpAddr>,
    /// Gateway, public Wi-Fi (v4): a request; a role takes effect only
    /// once an operator approved it for this node.
    pub roles: Roles,
}

/// The longest hostname a Hello may carry: one DNS label (RFC 1035), which
/// is also what OpenWrt's `system.hostname` allows. Every event, list and
/// map label shows it, so it must stay one short line.
pub const MAX_HOSTNAME_LEN: usize = 63;

/// Why a Hello's hostname is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    #[error("hostname is empty")]
    Empty,
    #[error("hostname is {0} bytes long; at most {MAX_HOSTNAME_LEN} are allowed")]
    TooLong(usize),
    #[error("hostname contains {0:?}; only letters, digits, '.' and '-' are allowed")]
    BadCharacter(char),
}

/// Checks the hostname rule: 1 to 63 characters of `[A-Za-z0-9.-]`.
pub fn check_hostname(hostname: &str) -> Result<(), HostnameError> {
    if hostname.is_empty() {
        return Err(HostnameError::Empty);
    }
    if hostname.len() > MAX_HOSTNAME_LEN {
        return Err(HostnameError::TooLong(hostname.len()));
    }
    match hostname
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '-'))
    {
        Some(c) => Err(HostnameError::BadCharacter(c)),
        None => Ok(()),
    }
}

/// What the agent measured and can reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub links: Vec<LinkMeasurement>,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkMeasurement {
    pub peer: PublicKeyBytes,
    pub rtt_us: u32,
    pub loss_ppm: u32,
    pub up: bool,
}

/// A neighbour the agent can reach (found by a link-local hello or
/// configured), with the endpoint it reaches it on, if it knows one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub peer: PublicKeyBytes,
    pub endpoint: Option<SocketAddr>,
}

/// Frames the controller sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerMsg {
    /// The node is enrolled and active: its identity and addresses.
    Welcome(Welcome),
    /// The node waits for an operator's approval; the connection closes and
    /// the agent tries again later.
    Pending {
        node_id: NodeId,
    },
    /// Full link set after (re)connect; `last` closes a multi-frame set.
    Links {
        links: Vec<LinkAssignment>,
        last: bool,
    },
    /// Full route table after (re)connect; `last` closes a multi-frame set.
    Routes {
        routes: Vec<Route>,
        last: bool,
    },
    LinksDelta(Vec<LinkChange>),
    RoutesDelta(Vec<RouteChange>),
    /// Something is wrong; the controller closes the connection after it.
    Error(ErrorMsg),
    Ping(u64),
    Pong(u64),
    /// This node's membership credential, signed with the key the Welcome
    /// named (v5): after every Welcome, and again whenever it is renewed
    /// (its addresses, roles or prefixes changed, or less than half its
    /// lifetime is left).
    Credential(SignedCredential),
    /// Revocation pages of the controller's current list (v5): the whole
    /// list after every Welcome and whenever it changes, at most
    /// [`MAX_REVOCATION_PAGES_PER_FRAME`] pages per frame (a longer list
    /// takes several frames; every page names its serial and page count,
    /// so no `last` flag is needed).
    Revocations(Vec<SignedRevocationPage>),
    /// Control exits (v6): the overlay relay addresses (port
    /// [`crate::discovery::CONTROL_RELAY_PORT`]) of enrolled routers whose
    /// own session reaches the controller directly, at most
    /// [`MAX_CONTROL_EXITS`], in the controller's order of preference. An
    /// agent with no underlay route to the controller dials these through
    /// the mesh. The whole list after every Welcome and whenever it
    /// changes.
    ControlExits(Vec<SocketAddr>),
    /// The node's exit gateway (v7): the gateway its primary default
    /// route leaves the mesh through (its own key on a gateway that is its
    /// own exit), `None` without a default route. Shown to collectors
    /// (respondd `statistics.gateway`); routing does not depend on it.
    /// After every Welcome and whenever it changes.
    ExitGateway(Option<PublicKeyBytes>),
}

/// The most control exits one [`ControllerMsg::ControlExits`] may name:
/// enough for a town to have exits in every district, few enough that the
/// frame stays small (16 addresses are under 400 bytes) and an agent's
/// round over them stays short. The agent refuses a longer list.
pub const MAX_CONTROL_EXITS: usize = 16;

/// Revocation pages one [`ControllerMsg::Revocations`] frame may carry:
/// 16 signed pages of at most ~1,070 bytes stay far below [`MAX_FRAME`],
/// and the agent refuses a frame with more, so a broken controller cannot
/// make it hold more than this per frame.
pub const MAX_REVOCATION_PAGES_PER_FRAME: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub node_id: NodeId,
    /// The node's overlay addresses: an IPv6 /128 and an IPv4 /32.
    pub addresses: Vec<IpNet>,
    /// The mesh's aggregate prefixes (ULA /48, IPv4 pool, public client
    /// pool): what the kernel sends into the mesh.
    pub mesh_prefixes: Vec<IpNet>,
    /// A public Wi-Fi node's client prefixes: its /64 and its IPv4 subnet
    /// (v4); empty for other nodes. They stay the node's for good, so
    /// clients keep their addresses whichever gateway they use.
    pub client_prefixes: Vec<IpNet>,
    /// The controller's Ed25519 signing key (v5): credentials and
    /// revocation pages verify against it. It arrives over the channel the
    /// pinned controller key authenticates, so the agent trusts it as
    /// much as the pinned key.
    pub signing_key: SigningKeyBytes,
}

/// A link the node should hold: the neighbour, where to reach it, and the
/// link profile (`fast`, `default`, `metered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkAssignment {
    pub peer: PublicKeyBytes,
    pub endpoint: Option<SocketAddr>,
    pub profile: String,
    /// Sources the neighbour may send from, when it is a standard
    /// WireGuard site rather than a freimesh node (v4): its LAN prefixes
    /// and its overlay address. Empty for freimesh neighbours (they
    /// forward for others, so any source may come from them).
    pub allowed_sources: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkChange {
    Add(LinkAssignment),
    Remove(PublicKeyBytes),
}

/// A route: destination prefix, next hops as neighbour keys, primary first
/// then the loop-free alternates. The receiving node's *own* key in `via`
/// means "deliver here" (a gateway's default route, before the alternates
/// toward other gateways that take over when its uplink fails).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub prefix: IpNet,
    pub via: Vec<PublicKeyBytes>,
    /// The destination's routing domain (v4).
    pub segment: Segment,
    /// Neighbours other than `via` through which traffic *from* this
    /// prefix may arrive (v7): the hops of repair paths, where a node
    /// upstream forwards over a loop-free alternate. Together with `via`
    /// they are the neighbours the feasible-source rule accepts this
    /// prefix's sources from. At most [`MAX_ROUTE_UPSTREAMS`], in the
    /// controller's node order.
    pub upstreams: Vec<PublicKeyBytes>,
}

/// At most this many [`Route::upstreams`] per route: a router has at most
/// 8 discovered links per mesh interface plus its configured ones, and a
/// cap bounds what one route costs on the wire.
pub const MAX_ROUTE_UPSTREAMS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteChange {
    Set(Route),
    Remove(IpNet),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    pub code: ErrorCode,
    pub message: String,
}

/// Machine-readable error kinds; `message` carries the detail for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// A frame did not decode, or came at the wrong time.
    Malformed,
    /// The Hello's protocol version is not one the controller speaks.
    UnsupportedVersion,
    /// The key is not enrolled and no token came with it.
    UnknownKey,
    Revoked,
    /// No token with this value exists.
    TokenInvalid,
    TokenExpired,
    TokenUsed,
    /// The node announced a prefix the operator did not approve for it.
    PrefixNotApproved,
    /// A requested address lies outside the mesh pools.
    AddressOutOfPool,
    /// A requested address belongs to another node.
    AddressTaken,
    /// A pool has no free address left.
    PoolExhausted,
    /// The controller failed (e.g. its database); try again later.
    Internal,
    /// The Hello's hostname is not 1 to 63 characters of `[A-Za-z0-9.-]`.
    BadHostname,
    /// Too many nodes wait for approval (in total, or new ones from this
    /// source address this minute); try again later.
    TooManyPending,
}

impl std::fmt::Display for ErrorMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// Encodes one frame; fails if it would not fit a transport message.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let bytes = postcard::to_stdvec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Decodes exactly one frame: truncated input, unknown variants and trailing
/// bytes are errors.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    let (msg, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Trailing(rest.len()));
    }
    Ok(msg)
}

/// The protocol version of a frame that starts like a Hello, read without
/// decoding the rest: lets the controller answer "unsupported version" to a
/// newer agent whose Hello it could not otherwise parse.
pub fn hello_version(bytes: &[u8]) -> Option<u16> {
    #[derive(Deserialize)]
    enum Prefix {
        Hello(u16),
    }
    let (Prefix::Hello(version), _) = postcard::take_from_bytes::<Prefix>(bytes).ok()?;
    Some(version)
}

/// The frames one controller message becomes on the wire: full state and
/// deltas that do not fit one transport message are split with
/// [`chunked`], revocation lists into frames of at most
/// [`MAX_REVOCATION_PAGES_PER_FRAME`] pages; everything else is one frame. The server writes these, and
/// the whole-mesh simulator sends the same frames.
pub fn encode_controller_frames(msg: &ControllerMsg) -> Result<Vec<Vec<u8>>, FrameError> {
    match msg {
        ControllerMsg::Links { links, last: true } => {
            chunked(links, &|links, last| ControllerMsg::Links { links, last })
        }
        ControllerMsg::Routes { routes, last: true } => chunked(routes, &|routes, last| {
            ControllerMsg::Routes { routes, last }
        }),
        ControllerMsg::LinksDelta(c) => chunked(c, &|c, _| ControllerMsg::LinksDelta(c)),
        ControllerMsg::RoutesDelta(c) => chunked(c, &|c, _| ControllerMsg::RoutesDelta(c)),
        ControllerMsg::Revocations(pages) if pages.len() > MAX_REVOCATION_PAGES_PER_FRAME => pages
            .chunks(MAX_REVOCATION_PAGES_PER_FRAME)
            .map(|chunk| encode(&ControllerMsg::Revocations(chunk.to_vec())))
            .collect(),
        other => encode(other).map(|f| vec![f]),
    }
}

/// Splits `items` into as few frames built by `make(chunk, last)` as fit
/// [`MAX_FRAME`]; always returns at least one frame (possibly empty).
///
/// A chunk that does not fit is halved, and the halves split again. Each
/// item's encoded length is measured once, so a chunk's frame length is
/// known before it is built: a full table of thousands of routes is cloned
/// and encoded once, not once per halving. (Postcard writes a sequence as
/// its length then its items, so a frame of `n` items is the empty frame
/// with the length's bytes and the items' bytes added.)
pub fn chunked<I: Clone + Serialize>(
    items: &[I],
    make: &dyn Fn(Vec<I>, bool) -> ControllerMsg,
) -> Result<Vec<Vec<u8>>, FrameError> {
    struct Chunker<'a, I> {
        items: &'a [I],
        /// `ends[i]`: the encoded length of `items[..i]`.
        ends: Vec<usize>,
        /// The encoded length of the frame with no items, last or not.
        empty: [usize; 2],
        make: &'a dyn Fn(Vec<I>, bool) -> ControllerMsg,
    }
    impl<I: Clone> Chunker<'_, I> {
        fn frame_len(&self, from: usize, to: usize, last: bool) -> usize {
            // The empty frame holds the length 0 in one byte.
            self.empty[usize::from(last)] - 1
                + varint_len(to - from)
                + (self.ends[to] - self.ends[from])
        }
        fn go(
            &self,
            from: usize,
            to: usize,
            last: bool,
            out: &mut Vec<Vec<u8>>,
        ) -> Result<(), FrameError> {
            let fits = self.frame_len(from, to, last) <= MAX_FRAME;
            if !fits && to - from > 1 {
                let mid = from + (to - from) / 2;
                self.go(from, mid, false, out)?;
                return self.go(mid, to, last, out);
            }
            match encode(&(self.make)(self.items[from..to].to_vec(), last)) {
                Ok(frame) => {
                    out.push(frame);
                    Ok(())
                }
                // Only if a length was misjudged: split as measured.
                Err(FrameError::TooLarge(_)) if to - from > 1 => {
                    let mid = from + (to - from) / 2;
                    self.go(from, mid, false, out)?;
                    self.go(mid, to, last, out)
                }
                Err(e) => Err(e),
            }
        }
    }
    let mut ends = Vec::with_capacity(items.len() + 1);
    ends.push(0);
    for item in items {
        let len = encoded_len(item)?;
        ends.push(ends.last().copied().unwrap_or(0) + len);
    }
    let chunker = Chunker {
        items,
        ends,
        empty: [
            encoded_len(&make(Vec::new(), false))?,
            encoded_len(&make(Vec::new(), true))?,
        ],
        make,
    };
    let mut out = Vec::new();
    chunker.go(0, items.len(), true, &mut out)?;
    Ok(out)
}

/// The length of `value` encoded, without encoding it.
fn encoded_len<T: Serialize>(value: &T) -> Result<usize, FrameError> {
    postcard::serialize_with_flavor::<T, postcard::ser_flavors::Size, usize>(
        value,
        postcard::ser_flavors::Size::default(),
    )
    .map_err(|e| FrameError::Malformed(e.to_string()))
}

/// How many bytes postcard's varint takes for a sequence length `n`.
fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    usize::try_from(bits.div_ceil(7)).map_or(1, |b| b.max(1))
}

/// The agent's half of the handshake, between sending message 1 and
/// receiving message 2.
pub struct Initiator(snow::HandshakeState);

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Initiator")
    }
}

fn noise_err(e: snow::Error) -> FrameError {
    FrameError::Noise(e.to_string())
}

fn builder() -> Result<snow::Builder<'static>, FrameError> {
    let params = NOISE_PATTERN.parse().map_err(noise_err)?;
    snow::Builder::with_resolver(params, Box::new(crate::noise::ControlResolver))
        .prologue(NOISE_PROLOGUE)
        .map_err(noise_err)
}

impl Initiator {
    /// Starts a handshake with the node's private key and the pinned
    /// controller key; returns the state and message 1 to send.
    pub fn start(
        local_private: &[u8; 32],
        controller: &PublicKeyBytes,
    ) -> Result<(Self, Vec<u8>), FrameError> {
        let mut hs = builder()?
            .local_private_key(local_private)
            .map_err(noise_err)?
            .remote_public_key(&controller.0)
            .map_err(noise_err)?
            .build_initiator()
            .map_err(noise_err)?;
        let mut msg = vec![0u8; MAX_NOISE_MESSAGE];
        let n = hs.write_message(&[], &mut msg).map_err(noise_err)?;
        msg.truncate(n);
        Ok((Self(hs), msg))
    }

    /// Reads message 2: the controller proved it holds the pinned key.
    pub fn finish(mut self, msg2: &[u8]) -> Result<Transport, FrameError> {
        let mut buf = vec![0u8; MAX_NOISE_MESSAGE];
        self.0.read_message(msg2, &mut buf).map_err(noise_err)?;
        Ok(Transport(self.0.into_transport_mode().map_err(noise_err)?))
    }
}

/// The controller's half: reads message 1, returns the session, the agent's
/// authenticated static key and message 2 to send back.
pub fn respond(
    local_private: &[u8; 32],
    msg1: &[u8],
) -> Result<(Transport, PublicKeyBytes, Vec<u8>), FrameError> {
    let mut hs = builder()?
        .local_private_key(local_private)
        .map_err(noise_err)?
        .build_responder()
        .map_err(noise_err)?;
    let mut buf = vec![0u8; MAX_NOISE_MESSAGE];
    hs.read_message(msg1, &mut buf).map_err(noise_err)?;
    let remote = hs
        .get_remote_static()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| FrameError::Noise("no remote static key".into()))?;
    let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
    buf.truncate(n);
    let transport = hs.into_transport_mode().map_err(noise_err)?;
    Ok((Transport(transport), PublicKeyBytes(remote), buf))
}

/// A fresh X25519 key pair `(private, public)` for a controller.
pub fn generate_keypair() -> Result<([u8; 32], PublicKeyBytes), FrameError> {
    let kp = builder()?.generate_keypair().map_err(noise_err)?;
    let private = <[u8; 32]>::try_from(kp.private.as_slice())
        .map_err(|_| FrameError::Noise("private key length".into()))?;
    let public = <[u8; 32]>::try_from(kp.public.as_slice())
        .map_err(|_| FrameError::Noise("public key length".into()))?;
    Ok((private, PublicKeyBytes(public)))
}

/// An established session: seals and opens frames.
pub struct Transport(snow::TransportState);

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

impl Transport {
    /// Encrypts one encoded frame into a transport message (without the
    /// length prefix).
    pub fn seal(&mut self, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
        if frame.len() > MAX_FRAME {
            return Err(FrameError::TooLarge(frame.len()));
        }
        let mut out = vec![0u8; frame.len() + TAG_LEN];
        let n = self.0.write_message(frame, &mut out).map_err(noise_err)?;
        out.truncate(n);
        Ok(out)
    }

    /// Decrypts one transport message into the encoded frame.
    pub fn open(&mut self, message: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = vec![0u8; message.len()];
        let n = self.0.read_message(message, &mut out).map_err(noise_err)?;
        out.truncate(n);
        Ok(out)
    }
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;

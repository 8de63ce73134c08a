//! Segments: the routing domains traffic belongs to (`ARCHITECTURE.md`,
//! "Segments"). Public Wi-Fi and the municipal intranet share the mesh's
//! links but never each other's addresses.
//!
//! Every prefix the controller hands out carries its segment; an agent
//! classifies a packet's source and destination by longest-prefix match
//! and forwards it only when [`Segment::may_reach`] allows the pair, on
//! every hop, so one misconfigured node cannot open the intranet to the
//! public.

use serde::{Deserialize, Serialize};

/// The routing domain of a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Segment {
    /// The routers themselves: each node's overlay /128 and /32.
    Infrastructure,
    /// Municipal buildings' LANs (approved prefixes) and standard
    /// WireGuard sites.
    Intranet,
    /// Public Wi-Fi clients: each public node's client /64 and IPv4 subnet.
    Public,
    /// Everything beyond the gateways: the default routes.
    Internet,
}

impl Segment {
    /// Whether traffic from a source in `self` may go to a destination in
    /// `dst`:
    ///
    /// | from \ to | infrastructure | intranet | public | internet |
    /// |---|---|---|---|---|
    /// | infrastructure | yes | yes | no | yes |
    /// | intranet | yes | yes | no | no |
    /// | public | no | no | no | yes |
    /// | internet | yes | no | yes | no |
    ///
    /// Public clients reach the internet only (not each other across the
    /// mesh, not the routers, never the intranet); the internet reaches
    /// them only as answers through the gateway's NAT. City IT manages
    /// routers from the intranet. Nothing transits the mesh from the
    /// internet to the internet.
    pub fn may_reach(self, dst: Segment) -> bool {
        use Segment::{Infrastructure, Internet, Intranet, Public};
        matches!(
            (self, dst),
            (Infrastructure, Infrastructure | Intranet | Internet)
                | (Intranet, Infrastructure | Intranet)
                | (Public, Internet)
                | (Internet, Infrastructure | Public)
        )
    }

    pub const ALL: [Segment; 4] = [
        Segment::Infrastructure,
        Segment::Intranet,
        Segment::Public,
        Segment::Internet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Infrastructure => "infrastructure",
            Segment::Intranet => "intranet",
            Segment::Public => "public",
            Segment::Internet => "internet",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Segment::{self, Infrastructure, Internet, Intranet, Public};

    #[test]
    fn public_clients_never_reach_the_intranet_either_way() {
        assert!(!Public.may_reach(Intranet));
        assert!(!Intranet.may_reach(Public));
        assert!(!Public.may_reach(Infrastructure));
        assert!(!Public.may_reach(Public));
        assert!(!Internet.may_reach(Intranet));
        assert!(!Intranet.may_reach(Internet));
        assert!(Public.may_reach(Internet));
        assert!(Internet.may_reach(Public));
        assert!(Intranet.may_reach(Intranet));
    }

    #[test]
    fn the_table_in_the_docs_is_the_policy() {
        let expected = [
            [true, true, false, true],
            [true, true, false, false],
            [false, false, false, true],
            [true, false, true, false],
        ];
        for (i, src) in Segment::ALL.iter().enumerate() {
            for (j, dst) in Segment::ALL.iter().enumerate() {
                assert_eq!(src.may_reach(*dst), expected[i][j], "{src:?} -> {dst:?}");
            }
        }
    }
}

//! Batched underlay I/O, the pure half: which of one engine step's
//! datagrams travel together in one UDP GSO send ([`SendRun`]), and how a
//! UDP GRO receive splits back into the datagrams the neighbour sent
//! ([`gro_datagrams`]). The socket half is [`super::underlay`].
//!
//! The kernel's rules for one GSO send are the ones enforced here: one
//! destination, every segment the same size except the last (which may be
//! shorter), at most the socket's segment limit, and one UDP payload's
//! worth of bytes in all. Runs are only ever made of *consecutive*
//! transmits, so the order the engine produced is the order on the wire.

use std::net::SocketAddr;

/// Bytes one GSO send may carry in all: the largest UDP payload over IPv4
/// (65,535 − 20 − 8), which the kernel checks against the whole send.
pub(super) const MAX_GSO_BYTES: usize = 65_507;

/// A run of consecutive datagrams to one destination, sent as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SendRun {
    pub to: SocketAddr,
    /// The size of every datagram in the run but the last.
    pub segment: usize,
    pub count: usize,
    pub bytes: usize,
    /// A shorter datagram ended the run: nothing may follow it.
    closed: bool,
}

impl SendRun {
    /// A run starting with one datagram of `len` bytes to `to`.
    pub(super) fn start(to: SocketAddr, len: usize) -> Self {
        Self {
            to,
            segment: len,
            count: 1,
            bytes: len,
            closed: len == 0,
        }
    }

    /// Adds a datagram of `len` bytes to `to` if the kernel would send it in
    /// the same GSO send; otherwise says no and leaves the run as it was.
    pub(super) fn join(&mut self, to: SocketAddr, len: usize, max_segments: usize) -> bool {
        let fits = !self.closed
            && to == self.to
            && len > 0
            && len <= self.segment
            && self.count < max_segments
            && self.bytes + len <= MAX_GSO_BYTES;
        if fits {
            self.count += 1;
            self.bytes += len;
            self.closed = len < self.segment;
        }
        fits
    }

    /// The segment size to hand the kernel: `None` for a single datagram,
    /// which needs no GSO.
    pub(super) fn gso_segment(&self) -> Option<usize> {
        (self.count > 1).then_some(self.segment)
    }
}

/// Groups datagrams (destination, length), in order, into the runs the
/// shell sends; concatenated, the runs' members are the input again.
pub(super) fn plan_runs(
    datagrams: impl IntoIterator<Item = (SocketAddr, usize)>,
    max_segments: usize,
) -> Vec<SendRun> {
    let mut runs: Vec<SendRun> = Vec::new();
    for (to, len) in datagrams {
        let joined = runs
            .last_mut()
            .is_some_and(|run| run.join(to, len, max_segments));
        if !joined {
            runs.push(SendRun::start(to, len));
        }
    }
    runs
}

/// The datagrams in `data`, one receive's worth: the kernel coalesced them
/// (UDP GRO) into segments of `stride` bytes, the last possibly shorter. A
/// stride of 0 (or one past the data) is one datagram.
pub(super) fn gro_datagrams(data: &[u8], stride: usize) -> impl Iterator<Item = &[u8]> {
    let stride = if stride == 0 {
        data.len().max(1)
    } else {
        stride
    };
    data.chunks(stride)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn equal_datagrams_to_one_neighbour_go_together_and_a_short_one_ends_the_run() {
        let a = addr(1);
        let runs = plan_runs([(a, 100), (a, 100), (a, 60), (a, 100)], 64);
        assert_eq!(runs.len(), 2);
        assert_eq!(
            (runs[0].count, runs[0].segment, runs[0].bytes),
            (3, 100, 260)
        );
        assert_eq!(runs[0].gso_segment(), Some(100));
        assert_eq!(runs[1].gso_segment(), None);
    }

    #[test]
    fn another_destination_a_longer_datagram_or_the_segment_limit_starts_a_new_run() {
        let (a, b) = (addr(1), addr(2));
        let runs = plan_runs([(a, 100), (b, 100), (b, 120), (b, 120), (b, 120)], 2);
        let counts: Vec<_> = runs.iter().map(|r| (r.to, r.count)).collect();
        assert_eq!(counts, vec![(a, 1), (b, 1), (b, 2), (b, 1)]);
    }

    #[test]
    fn a_run_never_carries_more_than_one_udp_payload() {
        let a = addr(1);
        let runs = plan_runs(std::iter::repeat_n((a, 1_500), 64), 64);
        assert!(runs.iter().all(|r| r.bytes <= MAX_GSO_BYTES), "{runs:?}");
        assert_eq!(runs[0].count, MAX_GSO_BYTES / 1_500);
    }

    #[test]
    fn a_receive_without_gro_is_one_datagram() {
        let data = [7u8; 90];
        assert_eq!(gro_datagrams(&data, 0).count(), 1);
        assert_eq!(gro_datagrams(&data, 90).count(), 1);
        assert_eq!(gro_datagrams(&[], 0).count(), 0);
    }

    proptest! {
        /// A step's datagrams sent in runs and received coalesced come out
        /// as the same datagrams in the same order, and every run obeys the
        /// kernel's rules for one GSO send.
        #[test]
        fn runs_then_gro_give_back_every_datagram_in_order(
            datagrams in prop::collection::vec((0u16..3, 1usize..1_600), 0..200),
            max_segments in 1usize..70,
        ) {
            let datagrams: Vec<(SocketAddr, Vec<u8>)> = datagrams
                .iter()
                .enumerate()
                .map(|(i, &(port, len))| {
                    let fill = u8::try_from(i % 251).unwrap_or(0);
                    (addr(port), vec![fill; len])
                })
                .collect();
            let runs = plan_runs(datagrams.iter().map(|(to, d)| (*to, d.len())), max_segments);
            let mut next = 0;
            let mut received = Vec::new();
            for run in &runs {
                let members = &datagrams[next..next + run.count];
                next += run.count;
                prop_assert!(run.count <= max_segments);
                prop_assert!(run.bytes <= MAX_GSO_BYTES);
                prop_assert!(members.iter().all(|(to, _)| *to == run.to));
                let (last, rest) = members.split_last().expect("runs are never empty");
                prop_assert!(rest.iter().all(|(_, d)| d.len() == run.segment));
                prop_assert!(last.1.len() <= run.segment);
                // What the kernel sends as one and the receiver's GRO
                // hands up as one buffer.
                let wire: Vec<u8> = members.iter().flat_map(|(_, d)| d.clone()).collect();
                let stride = run.gso_segment().unwrap_or(0);
                received.extend(gro_datagrams(&wire, stride).map(|d| (run.to, d.to_vec())));
            }
            prop_assert_eq!(next, datagrams.len());
            prop_assert_eq!(received, datagrams);
        }
    }
}

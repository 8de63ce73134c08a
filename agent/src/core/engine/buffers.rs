//! Datagram buffers the shell hands back after sending them, so that a
//! node's steady traffic (heartbeats above all) allocates nothing: every
//! [`Output::Transmit`](super::Output) is filled from this pool, and
//! [`Engine::recycle`](super::Engine::recycle) returns it.

/// Buffers kept for reuse, at most: more than one step of an idle node's
/// outputs (a heartbeat per link), few enough to be nothing in memory.
const POOLED_BUFFERS: usize = 64;
/// Capacity of a new buffer, and the largest kept: a full-size WireGuard
/// datagram (1420-byte inner MTU + 32 bytes) fits, so a buffer that
/// carried a keepalive can carry data next. Larger ones are dropped
/// rather than kept: the pool stays under 128 KiB.
const BUFFER_CAPACITY: usize = 2048;

#[derive(Debug, Default)]
pub(super) struct BufferPool {
    spare: Vec<Vec<u8>>,
}

impl BufferPool {
    /// A buffer holding a copy of `bytes`: a spare one if there is one.
    pub(super) fn copy_of(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buffer = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY.max(bytes.len())));
        buffer.clear();
        buffer.extend_from_slice(bytes);
        buffer
    }

    /// Keeps `buffer` for a later [`BufferPool::copy_of`], if there is room
    /// and it is not oversized.
    pub(super) fn give_back(&mut self, buffer: Vec<u8>) {
        if self.spare.len() < POOLED_BUFFERS && buffer.capacity() <= BUFFER_CAPACITY {
            self.spare.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_without_allocating() {
        let mut pool = BufferPool::default();
        let first = pool.copy_of(b"keepalive");
        let address = first.as_ptr();
        pool.give_back(first);
        let second = pool.copy_of(&[7; 1452]);
        assert_eq!(second.as_ptr(), address, "same allocation, no growth");
        assert_eq!(second, vec![7; 1452]);
    }

    #[test]
    fn the_pool_is_bounded() {
        let mut pool = BufferPool::default();
        for _ in 0..POOLED_BUFFERS + 10 {
            pool.give_back(Vec::with_capacity(16));
        }
        pool.give_back(Vec::with_capacity(BUFFER_CAPACITY * 4));
        assert_eq!(pool.spare.len(), POOLED_BUFFERS);
        assert!(pool.spare.iter().all(|b| b.capacity() <= BUFFER_CAPACITY));
    }
}

//! Buffers lent to sessions while they move data, and the queues of the responses they are owed. An idle
//! client holds none (thousands of idle clients cost no buffer memory), and a busy one takes a warm one from
//! here instead of allocating per transaction.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::BytesMut;

use super::session::expect::Expect;

/// The capacity of a new buffer; enough for ordinary statements and their answers.
const SIZE: usize = 2 * 1024;

/// Buffers bigger than this (grown for a COPY or a large result) go back to the allocator.
const MAX_KEPT: usize = 8 * 1024;

/// At most this many idle buffers are kept (2 kB each: 2 MB).
const MAX_FREE: usize = 1024;

/// Room for this many owed responses in a new queue (a Parse/Bind/Describe/Execute/Sync batch, a parameter
/// sync before it); queues that grew past `MAX_QUEUE` go back to the allocator.
const QUEUE: usize = 8;
const MAX_QUEUE: usize = 64;

#[derive(Debug, Default)]
pub struct BufferPool {
    free: Mutex<Vec<BytesMut>>,
    queues: Mutex<Vec<VecDeque<Expect>>>,
}

impl BufferPool {
    /// An empty buffer with room for at least `SIZE` bytes.
    pub fn take(&self) -> BytesMut {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.unwrap_or_else(|| BytesMut::with_capacity(SIZE))
    }

    /// Gives back a buffer whose content is no longer needed.
    pub fn give(&self, mut buf: BytesMut) {
        buf.clear();
        // Frames split off it may still share its memory: then it is not reusable as a whole.
        if !(SIZE..=MAX_KEPT).contains(&buf.capacity()) && !buf.try_reclaim(SIZE) {
            return;
        }
        if buf.capacity() > MAX_KEPT {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < MAX_FREE {
            free.push(buf);
        }
    }

    /// Takes `buf` back into the pool if it is empty, leaving an unallocated buffer in its place.
    pub fn reclaim(&self, buf: &mut BytesMut) {
        if buf.is_empty() && buf.capacity() > 0 {
            self.give(std::mem::take(buf));
        }
    }

    /// Fills an unallocated `buf` from the pool.
    pub fn lend(&self, buf: &mut BytesMut) {
        if buf.capacity() == 0 {
            *buf = self.take();
        }
    }

    /// Gives an unallocated response queue room, from the pool when it has some.
    pub fn lend_queue(&self, queue: &mut VecDeque<Expect>) {
        if queue.capacity() == 0 {
            let reused = self.queues.lock().unwrap_or_else(|e| e.into_inner()).pop();
            *queue = reused.unwrap_or_else(|| VecDeque::with_capacity(QUEUE));
        }
    }

    /// Takes an empty response queue's room back, leaving an unallocated queue in its place.
    pub fn reclaim_queue(&self, queue: &mut VecDeque<Expect>) {
        if !queue.is_empty() || queue.capacity() == 0 {
            return;
        }
        let queue = std::mem::take(queue);
        if queue.capacity() <= MAX_QUEUE {
            let mut free = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            if free.len() < MAX_FREE {
                free.push(queue);
            }
        }
    }
}

/// Moves an emptied buffer's next read back to the start of its memory. A buffer read into at its end and
/// consumed from its front otherwise walks through its whole capacity before a reserve resets it: every
/// transaction's read lands on a cold cache line (a server connection's 16 kB, a client's 2 kB, across every
/// busy connection), where rewound, a steady exchange reuses the same few. Never allocates; does nothing while
/// frames split off the buffer still share its memory.
pub fn rewind(buf: &mut BytesMut) {
    if buf.is_empty() {
        // More than the room left after the read position: met only by moving that position to the start.
        let _ = buf.try_reclaim(buf.capacity() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_warm_and_oversized_ones_do_not() {
        let pool = BufferPool::default();
        let mut a = pool.take();
        assert!(a.capacity() >= SIZE);
        a.extend_from_slice(b"SELECT 1");
        let ptr = a.as_ptr();
        pool.reclaim(&mut a);
        assert!(a.capacity() >= SIZE, "not empty: kept by its session");
        a.clear();
        pool.reclaim(&mut a);
        assert_eq!(a.capacity(), 0, "empty: back in the pool");
        let mut b = BytesMut::new();
        pool.lend(&mut b);
        assert_eq!(b.as_ptr(), ptr, "the same memory, not a new allocation");
        assert!(b.is_empty());

        let big = BytesMut::with_capacity(MAX_KEPT * 4);
        pool.give(big);
        assert!(pool.free.lock().unwrap().is_empty(), "big buffers are not kept");

        let mut half = BytesMut::with_capacity(SIZE);
        half.extend_from_slice(&[0; 1500]);
        let frame = half.split_to(1500);
        pool.give(half);
        assert!(pool.free.lock().unwrap().is_empty(), "memory still shared with a frame is not kept");
        drop(frame);
    }

    #[test]
    fn an_emptied_buffer_reads_into_the_start_of_its_memory_again() {
        use bytes::Buf;
        // Consumed by advancing (a server connection's buffer).
        let mut buf = BytesMut::with_capacity(SIZE);
        let start = buf.as_ptr();
        buf.extend_from_slice(&[1; 70]);
        buf.advance(70);
        assert_ne!(buf.as_ptr(), start);
        rewind(&mut buf);
        assert_eq!((buf.as_ptr(), buf.capacity()), (start, SIZE));
        rewind(&mut buf);
        assert_eq!((buf.as_ptr(), buf.capacity()), (start, SIZE), "already at the start: unchanged");

        // Consumed by splitting frames off (a client's buffer): only once the frames are gone.
        buf.extend_from_slice(&[2; 63]);
        let frame = buf.split_to(63).freeze();
        rewind(&mut buf);
        assert_ne!(buf.as_ptr(), start, "the frame still uses the memory before it");
        drop(frame);
        rewind(&mut buf);
        assert_eq!(buf.as_ptr(), start);
        assert!(buf.capacity() >= SIZE);

        // Not empty: left alone.
        buf.extend_from_slice(&[3; 10]);
        buf.advance(5);
        let at = buf.as_ptr();
        rewind(&mut buf);
        assert_eq!(buf.as_ptr(), at);
    }

    #[test]
    fn response_queues_are_lent_and_come_back() {
        let pool = BufferPool::default();
        let mut q = VecDeque::new();
        pool.lend_queue(&mut q);
        assert!(q.capacity() >= QUEUE);
        q.push_back(Expect::Sync);
        pool.reclaim_queue(&mut q);
        assert_eq!(q.len(), 1, "a queue with requests in it stays with its session");
        q.clear();
        let ptr = q.as_slices().0.as_ptr();
        pool.reclaim_queue(&mut q);
        assert_eq!(q.capacity(), 0, "empty: back in the pool");
        let mut again = VecDeque::new();
        pool.lend_queue(&mut again);
        assert_eq!(again.as_slices().0.as_ptr(), ptr, "the same memory, not a new allocation");

        let mut big: VecDeque<Expect> = VecDeque::with_capacity(MAX_QUEUE * 2);
        pool.reclaim_queue(&mut big);
        assert_eq!(big.capacity(), 0);
        assert!(pool.queues.lock().unwrap().is_empty(), "grown queues are not kept");
    }
}

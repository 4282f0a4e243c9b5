//! The receive buffer: bytes read but not yet consumed.
//!
//! It is allocated on demand and freed when a connection goes idle, so an idle session
//! costs no buffer at all. Its size is bounded by the caller: the driver reads only when
//! the connection asks for input, and the connection consumes everything it can before
//! asking again.

/// Bytes received and not yet consumed, `buf[start..end]`. `buf` is initialised memory,
/// so the driver can read straight into its free tail without unsafe code.
#[derive(Debug, Default)]
pub(crate) struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RecvBuf {
    /// The unconsumed bytes.
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// How many bytes are buffered.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether nothing is buffered.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks the first `n` buffered bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Consumes the first `n` buffered bytes and returns where they sit in the allocation.
    /// They stay readable through [`RecvBuf::abs`] until the next call to `spare`.
    pub(crate) fn take(&mut self, n: usize) -> std::ops::Range<usize> {
        let range = self.start..self.start + n;
        self.consume(n);
        range
    }

    /// Bytes by their place in the allocation, as [`RecvBuf::take`] returned it.
    pub(crate) fn abs(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Drops everything buffered.
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Frees the allocation when nothing is buffered.
    pub(crate) fn release(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
        }
    }

    /// Returns at least `want` bytes of free space after the buffered bytes, moving them
    /// to the front or growing the allocation as needed.
    pub(crate) fn spare(&mut self, want: usize) -> &mut [u8] {
        if self.buf.len() - self.end < want {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < want {
                self.buf.resize(self.end + want, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were written into [`RecvBuf::spare`].
    pub(crate) fn filled(&mut self, n: usize) {
        self.end += n;
        debug_assert!(self.end <= self.buf.len());
    }

    /// Appends a copy of `data`.
    pub(crate) fn extend(&mut self, data: &[u8]) {
        self.spare(data.len())[..data.len()].copy_from_slice(data);
        self.filled(data.len());
    }

    /// The size of the allocation, for tests of the memory bounds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_before_growing() {
        let mut r = RecvBuf::default();
        r.extend(b"hello world");
        r.consume(6);
        assert_eq!(r.data(), b"world");
        let cap = r.capacity();
        r.spare(cap - 5);
        assert_eq!(r.capacity(), cap, "moving to the front made room");
        assert_eq!(r.data(), b"world");
        r.consume(5);
        r.release();
        assert_eq!(r.capacity(), 0);
    }
}
